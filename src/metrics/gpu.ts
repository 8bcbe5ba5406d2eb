// GPU utilisation and memory per device, for the dashboards and the "GPU memory near full"
// alert: read from nvidia-smi (NVML's command-line face, installed with the NVIDIA driver) when
// it is on PATH, at scrape time, at most once a second. No GPU, no series.
import { execFile } from 'node:child_process';
import { Gauge, type Registry } from 'prom-client';

export interface GpuReading {
  device: string;
  name: string;
  /** 0..1 */
  utilization: number;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
}

const QUERY = ['--query-gpu=index,name,utilization.gpu,memory.used,memory.total', '--format=csv,noheader,nounits'];
const MIB = 1024 * 1024;

/** nvidia-smi's CSV (index, name, utilization %, memory used MiB, memory total MiB), one line per device. */
export function parseNvidiaSmi(csv: string): GpuReading[] {
  return csv
    .split('\n')
    .map((line) => line.split(',').map((f) => f.trim()))
    .filter((f) => f.length === 5 && /^\d+$/.test(f[0]!))
    .map(([device, name, util, used, total]) => ({ device: device!, name: name!, utilization: Number(util) / 100, memoryUsedBytes: Number(used) * MIB, memoryTotalBytes: Number(total) * MIB }))
    .filter((r) => [r.utilization, r.memoryUsedBytes, r.memoryTotalBytes].every(Number.isFinite));
}

function readGpus(): Promise<GpuReading[]> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', QUERY, { timeout: 2000 }, (err, stdout) => resolve(err ? [] : parseNvidiaSmi(stdout)));
  });
}

/** easel_gpu_utilization_ratio, easel_gpu_memory_used_bytes and easel_gpu_memory_total_bytes per device. */
export function gpuGauges(registry: Registry, read: () => Promise<GpuReading[]> = readGpus): void {
  let last: { at: number; readings: Promise<GpuReading[]> } | undefined;
  const readings = (): Promise<GpuReading[]> => {
    if (!last || Date.now() - last.at > 1000) last = { at: Date.now(), readings: read() };
    return last.readings;
  };
  const gauge = (name: string, help: string, value: (r: GpuReading) => number): void => {
    new Gauge({
      name, help, labelNames: ['device', 'gpu'] as const, registers: [registry],
      async collect() {
        this.reset();
        for (const r of await readings()) this.set({ device: r.device, gpu: r.name }, value(r));
      },
    });
  };
  gauge('easel_gpu_utilization_ratio', 'GPU utilisation per device (0–1), from nvidia-smi.', (r) => r.utilization);
  gauge('easel_gpu_memory_used_bytes', 'GPU memory in use per device, from nvidia-smi.', (r) => r.memoryUsedBytes);
  gauge('easel_gpu_memory_total_bytes', 'GPU memory per device, from nvidia-smi.', (r) => r.memoryTotalBytes);
}
