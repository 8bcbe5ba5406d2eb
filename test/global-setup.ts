// Runs once before the tests: makes sure the system programs the tests start are installed.
// redis-server (the distributed job backend), chromium (the playground's browser tests),
// prometheus (deploy/'s rules and queries) and kubectl (deploy/kubernetes renders; Debian's
// kubernetes-client package) are installed through apt-get when missing and this process may;
// otherwise the run stops with what to install.
import { execFileSync } from 'node:child_process';

function onPath(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function aptInstall(pkg: string): void {
  const run = (args: string[]): void => {
    execFileSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  try {
    run(['install', '-y', '--no-install-recommends', pkg]);
  } catch {
    run(['update']);
    run(['install', '-y', '--no-install-recommends', pkg]);
  }
}

/** The system programs the tests start, and the Debian package of each. */
const PROGRAMS: [program: string, pkg: string, why: string][] = [
  ['redis-server', 'redis-server', "the distributed job backend's tests (or your system's Redis 7 package)"],
  ['chromium', 'chromium', "the playground's browser tests (or set EASEL_CHROMIUM to a Chromium or Chrome binary)"],
  ['prometheus', 'prometheus', "the Prometheus tests of deploy/ (the package has promtool too)"],
  ['kubectl', 'kubernetes-client', 'rendering deploy/kubernetes with kubectl kustomize (any kubectl from 1.14: Debian\'s kubernetes-client, or Kubernetes\'s own https://kubernetes.io/docs/tasks/tools/)'],
];

export default function setup(): void {
  const canInstall = process.getuid?.() === 0 && onPath('apt-get');
  for (const [program, pkg, why] of PROGRAMS) {
    if (program === 'chromium' && process.env.EASEL_CHROMIUM) continue;
    if (onPath(program)) continue;
    if (canInstall) {
      console.log(`${program} is missing: installing it with apt-get (package ${pkg})`);
      try {
        aptInstall(pkg);
      } catch {
        // Not in this machine's apt sources: the message below says what to install.
      }
    }
    if (!onPath(program)) throw new Error(`the tests need ${program} on PATH for ${why}: install it with \`sudo apt-get install -y ${pkg}\` (Debian/Ubuntu)`);
  }
}
