import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { gpuGauges, parseNvidiaSmi } from './gpu.js';

// nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits
// on a machine with two GPUs (the format NVIDIA documents: one line per device, MiB, percent).
const TWO_GPUS = '0, NVIDIA H100 80GB HBM3, 87, 61440, 81559\n1, NVIDIA H100 80GB HBM3, 0, 4, 81559\n';

describe('GPU metrics', () => {
  it("reads nvidia-smi's CSV: utilisation as a ratio, memory in bytes, per device", () => {
    expect(parseNvidiaSmi(TWO_GPUS)).toEqual([
      { device: '0', name: 'NVIDIA H100 80GB HBM3', utilization: 0.87, memoryUsedBytes: 61440 * 2 ** 20, memoryTotalBytes: 81559 * 2 ** 20 },
      { device: '1', name: 'NVIDIA H100 80GB HBM3', utilization: 0, memoryUsedBytes: 4 * 2 ** 20, memoryTotalBytes: 81559 * 2 ** 20 },
    ]);
    // A GPU that cannot report a field ("[N/A]") is left out, not reported as NaN.
    expect(parseNvidiaSmi('0, Tesla T4, [N/A], 10, 15360\n')).toEqual([]);
    expect(parseNvidiaSmi('')).toEqual([]);
  });

  it('exports one series per device, and none without a GPU', async () => {
    const registry = new Registry();
    gpuGauges(registry, async () => parseNvidiaSmi(TWO_GPUS));
    const text = await registry.metrics();
    expect(text).toContain('easel_gpu_utilization_ratio{device="0",gpu="NVIDIA H100 80GB HBM3"} 0.87');
    expect(text).toContain(`easel_gpu_memory_total_bytes{device="1",gpu="NVIDIA H100 80GB HBM3"} ${81559 * 2 ** 20}`);
    const none = new Registry();
    gpuGauges(none, async () => []);
    expect(await none.metrics()).not.toMatch(/^easel_gpu_\w+\{/m);
  });
});
