import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { DENIED_SYSCALLS, deniedSyscalls, seccompArch, seccompFilter } from '../../src/capsid/index.js';

const AUDIT_ARCH = { x86_64: 0xc000003e, aarch64: 0xc00000b7, i386: 0x40000003, arm: 0x40000028 };
const ALLOW = 0x7fff0000;
const KILL_PROCESS = 0x80000000;
const EPERM = 0x00050000 | 1;
const ENOSYS = 0x00050000 | 38;
const X32 = 0x40000000;

/** A classic-BPF interpreter for the instructions a seccomp filter may use (what the kernel would run). */
function run(program: Buffer, nr: number, arch: number, args: bigint[] = []): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  args.forEach((a, i) => {
    data.writeBigUInt64LE(a, 16 + 8 * i);
  });
  const count = program.length / 8;
  let a = 0;
  let pc = 0;
  while (pc < count) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case 0x20: // ld w abs
        assert.ok(k % 4 === 0 && k < 64, `load at ${k}`);
        a = data.readUInt32LE(k);
        break;
      case 0x15: // jeq k
        pc += a === k ? jt : jf;
        break;
      case 0x35: // jge k
        pc += a >= k ? jt : jf;
        break;
      case 0x45: // jset k
        pc += (a & k) >>> 0 !== 0 ? jt : jf;
        break;
      case 0x06: // ret k
        return k;
      default:
        assert.fail(`unexpected opcode 0x${code.toString(16)} at ${pc - 1}`);
    }
  }
  return assert.fail('ran off the end of the program');
}

function program(arch: string): Buffer {
  const f = seccompFilter(arch);
  assert.ok('program' in f, 'reason' in f ? f.reason : '');
  return f.program;
}

/** `#define __NR_<name> <n>` lines of a kernel header, or undefined when it is not installed. */
function headerNumbers(path: string): Map<string, number> | undefined {
  if (!existsSync(path)) return undefined;
  const out = new Map<string, number>();
  for (const m of readFileSync(path, 'utf8').matchAll(/^#define\s+__NR_(\w+)\s+(\d+)\s*$/gm)) {
    out.set(m[1], Number(m[2]));
  }
  return out;
}

const HEADERS = {
  x86_64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h',
  aarch64: '/usr/include/asm-generic/unistd.h',
} as const;

for (const arch of ['x86_64', 'aarch64'] as const) {
  test(`the ${arch} numbers match ${HEADERS[arch]}`, (t: TestContext) => {
    const header = headerNumbers(HEADERS[arch]);
    if (header === undefined) {
      t.skip(`${HEADERS[arch]} is not installed (apt-get install linux-libc-dev)`);
      return;
    }
    for (const s of DENIED_SYSCALLS) {
      assert.equal(s.nr[arch], header.get(s.name), `${s.name} on ${arch}`);
    }
  });
}

test('TIOCSTI is the number the ioctl rule matches', (t) => {
  const path = '/usr/include/asm-generic/ioctls.h';
  if (!existsSync(path)) {
    t.skip(`${path} is not installed (apt-get install linux-libc-dev)`);
    return;
  }
  const m = /^#define\s+TIOCSTI\s+(0x[0-9a-fA-F]+)/m.exec(readFileSync(path, 'utf8'));
  assert.equal(Number(m?.[1]), 0x5412);
  assert.equal(run(program('x64'), 16, AUDIT_ARCH.x86_64, [1n, 0x5412n]), EPERM);
});

for (const [nodeArch, arch] of [
  ['x64', 'x86_64'],
  ['arm64', 'aarch64'],
] as const) {
  test(`${arch}: every syscall number gets the action the table says`, () => {
    const p = program(nodeArch);
    assert.equal(p.length % 8, 0);
    assert.ok(p.length / 8 <= 4096, 'BPF_MAXINSNS');
    const audit = AUDIT_ARCH[arch];
    const denied = new Map(DENIED_SYSCALLS.filter((s) => s.nr[arch] !== undefined).map((s) => [s.nr[arch], s.name]));
    for (let nr = 0; nr < 1024; nr++) {
      const name = denied.get(nr);
      // The argument-dependent calls with harmless arguments: a thread's clone flags, TCGETS, PER_LINUX.
      const action = run(p, nr, audit, [0x3d0f00n, 0x5401n]);
      const expected =
        name === undefined || name === 'clone' || name === 'ioctl' || name === 'personality'
          ? name === 'personality'
            ? EPERM // 0x3d0f00 is not a persona Node uses
            : ALLOW
          : name === 'clone3'
            ? ENOSYS
            : EPERM;
      assert.equal(action, expected, `${arch} syscall ${nr} (${name ?? 'allowed'})`);
    }
    assert.equal(deniedSyscalls(nodeArch)?.length, denied.size);
    assert.equal(seccompArch(nodeArch), arch);
  });

  test(`${arch}: another ABI is killed, whatever the call`, () => {
    const p = program(nodeArch);
    for (const other of Object.values(AUDIT_ARCH).filter((a) => a !== AUDIT_ARCH[arch])) {
      for (const nr of [0, 1, 39, 56, 165, 172, 435]) assert.equal(run(p, nr, other), KILL_PROCESS);
    }
  });

  test(`${arch}: clone is refused only when its flags create a namespace`, () => {
    const p = program(nodeArch);
    const clone = DENIED_SYSCALLS.find((s) => s.name === 'clone')?.nr[arch] as number;
    const audit = AUDIT_ARCH[arch];
    // glibc's pthread_create fallback: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    assert.equal(run(p, clone, audit, [0x3d0f00n]), ALLOW);
    assert.equal(run(p, clone, audit, [0x1200011n]), ALLOW); // fork(): CHILD_SETTID|CHILD_CLEARTID|SIGCHLD
    for (const flag of [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]) {
      assert.equal(run(p, clone, audit, [BigInt(flag) | 0x11n]), EPERM, `flag 0x${flag.toString(16)}`);
    }
    // The kernel reads the low 32 bits only: namespace bits above them create nothing.
    assert.equal(run(p, clone, audit, [0x10000000n << 32n]), ALLOW);
  });

  test(`${arch}: personality allows the query and PER_LINUX; ioctl refuses TIOCSTI only`, () => {
    const p = program(nodeArch);
    const nr = (name: string) => DENIED_SYSCALLS.find((s) => s.name === name)?.nr[arch] as number;
    const audit = AUDIT_ARCH[arch];
    assert.equal(run(p, nr('personality'), audit, [0xffffffffn]), ALLOW);
    assert.equal(run(p, nr('personality'), audit, [0n]), ALLOW);
    assert.equal(run(p, nr('personality'), audit, [0x0040000n]), EPERM); // ADDR_NO_RANDOMIZE
    assert.equal(run(p, nr('personality'), audit, [0x0400000n]), EPERM); // READ_IMPLIES_EXEC
    assert.equal(run(p, nr('personality'), audit, [0x8n]), EPERM); // PER_LINUX32
    assert.equal(run(p, nr('ioctl'), audit, [1n, 0x5412n]), EPERM);
    assert.equal(run(p, nr('ioctl'), audit, [1n, (1n << 32n) | 0x5412n]), EPERM, 'high bits do not hide TIOCSTI');
    assert.equal(run(p, nr('ioctl'), audit, [1n, 0x5401n]), ALLOW); // TCGETS
    assert.equal(run(p, nr('ioctl'), audit, [0x5412n, 0x541bn]), ALLOW); // FIONREAD on fd 0x5412
  });
}

test('x86_64: x32 calls fail with ENOSYS; aarch64 has no x32 bit', () => {
  const x64 = program('x64');
  for (const nr of [0, 39, 165, 272, 512, 547]) assert.equal(run(x64, X32 | nr, AUDIT_ARCH.x86_64), ENOSYS);
  assert.equal(run(x64, -1, AUDIT_ARCH.x86_64), ENOSYS);
  assert.equal(run(program('arm64'), X32 | 172, AUDIT_ARCH.aarch64), ALLOW);
});

test('other architectures get a reason instead of a filter', () => {
  for (const arch of ['ia32', 'arm', 'riscv64', 'ppc64', 's390x', 'constructor', '__proto__']) {
    const f = seccompFilter(arch);
    assert.ok('reason' in f);
    assert.match(f.reason, new RegExp(`no seccomp filter for ${arch} \\(x86_64 and aarch64 only\\)`));
    assert.equal(deniedSyscalls(arch), undefined);
    assert.equal(seccompArch(arch), undefined);
  }
});

test('the table lists each call once, with the errno its rule returns', () => {
  const names = DENIED_SYSCALLS.map((s) => s.name);
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(
    DENIED_SYSCALLS.filter((s) => s.errno === 'ENOSYS').map((s) => s.name),
    ['clone3'],
  );
  assert.deepEqual(
    DENIED_SYSCALLS.filter((s) => s.when !== undefined)
      .map((s) => s.name)
      .sort(),
    ['clone', 'ioctl', 'personality'],
  );
  assert.ok(Object.isFrozen(DENIED_SYSCALLS));
  assert.ok(DENIED_SYSCALLS.every((s) => Object.isFrozen(s) && Object.isFrozen(s.nr)));
});

test('docs/SANDBOX.md § Syscall filter names every denied call in its group', () => {
  const docs = readFileSync(new URL('../../../docs/SANDBOX.md', import.meta.url), 'utf8');
  const section = docs.slice(docs.indexOf('### Syscall filter'), docs.indexOf('### Resource limits'));
  const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| group'));
  for (const s of DENIED_SYSCALLS) {
    const row = rows.find((r) => r.includes(`\`${s.name}\``) || r.includes(`\`${s.name}(`));
    assert.ok(row !== undefined, `${s.name} is missing from the table`);
    assert.ok(row.startsWith(`| ${s.group} |`), `${s.name} is listed outside its group ${s.group}: ${row}`);
    assert.ok(row.includes(`| ${s.errno} |`), `${s.name}: ${s.errno}`);
  }
});
