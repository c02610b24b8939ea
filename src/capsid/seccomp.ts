// Placeholder until the syscall filter lands: no filter is generated yet.
export function seccompFilter(_arch: string = process.arch): { program: Buffer } | { reason: string } {
  return { reason: 'the seccomp filter is not built yet' };
}
