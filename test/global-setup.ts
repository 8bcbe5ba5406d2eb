// Runs once before the tests: makes sure the system programs the tests start are installed.
// redis-server (for the distributed job backend) is installed through apt-get when it is
// missing and this process may; otherwise the run stops with what to install.
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

export default function setup(): void {
  if (onPath('redis-server')) return;
  const canInstall = process.getuid?.() === 0 && onPath('apt-get');
  if (canInstall) {
    console.log('redis-server is missing: installing it with apt-get (Debian package redis-server)');
    aptInstall('redis-server');
  }
  if (!onPath('redis-server')) {
    throw new Error('the tests need redis-server on PATH: install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu) or your system\'s Redis 7 package');
  }
}
