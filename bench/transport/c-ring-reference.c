// The machine's physical floor for a shared-memory ping: two processes ping-pong 16-byte records
// over a pair of SPSC rings in a shared mapping, both sides spinning (no syscalls, no wake-ups).
// Same record layout as Cell's rings (16-byte header, head/tail on separate cache lines).
// Usage: c-ring-reference <seconds> ; prints JSON with sequential median/p99 (ns) and rates.
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAP 65536u
#define MASK (CAP - 1)

struct ring {
  _Alignas(64) _Atomic uint32_t head;
  _Alignas(64) _Atomic uint32_t tail;
  _Alignas(64) uint8_t data[CAP];
};

static inline void cpu_relax(void) { __builtin_ia32_pause(); }

static void put(struct ring* r, uint32_t* wpos, uint32_t id, uint64_t value) {
  while (*wpos - atomic_load_explicit(&r->head, memory_order_acquire) + 32 > CAP) cpu_relax();
  uint32_t* rec = (uint32_t*)(r->data + (*wpos & MASK));
  rec[0] = 8;
  rec[1] = id;
  rec[2] = 1;
  rec[3] = 0;
  memcpy(rec + 4, &value, 8);
  *wpos += 32;
  atomic_store_explicit(&r->tail, *wpos, memory_order_release);
}

static uint64_t take(struct ring* r, uint32_t* rpos, uint32_t* id) {
  while (atomic_load_explicit(&r->tail, memory_order_acquire) == *rpos) cpu_relax();
  uint32_t* rec = (uint32_t*)(r->data + (*rpos & MASK));
  uint64_t v;
  *id = rec[1];
  memcpy(&v, rec + 4, 8);
  *rpos += 32;
  atomic_store_explicit(&r->head, *rpos, memory_order_release);
  return v;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 2.0;
  struct ring* rings = mmap(NULL, 2 * sizeof(struct ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (rings == MAP_FAILED) return 1;
  memset(rings, 0, 2 * sizeof(struct ring));
  struct ring* c2s = &rings[0];
  struct ring* s2c = &rings[1];
  pid_t pid = fork();
  if (pid == 0) {
    uint32_t rpos = 0, wpos = 0, id;
    for (;;) {
      uint64_t v = take(c2s, &rpos, &id);
      put(s2c, &wpos, id, v);
      if (v == UINT64_MAX) _exit(0);
    }
  }
  uint32_t rpos = 0, wpos = 0, id;
  // warm-up
  for (uint32_t i = 0; i < 100000; i++) {
    put(c2s, &wpos, i, i);
    take(s2c, &rpos, &id);
  }
  size_t max = 50000000, n = 0;
  uint64_t* samples = malloc(max * sizeof(uint64_t));
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), t0 = start;
  while (n < max) {
    put(c2s, &wpos, (uint32_t)n, n);
    uint64_t v = take(s2c, &rpos, &id);
    if (v != n || id != (uint32_t)n) {
      fprintf(stderr, "mismatch\n");
      return 2;
    }
    uint64_t t1 = now_ns();
    samples[n++] = t1 - t0;
    t0 = t1;
    if (t1 >= end) break;
  }
  double seqRate = n / ((t0 - start) / 1e9);
  qsort(samples, n, sizeof(uint64_t), cmp);
  // pipelined: keep up to 512 records in flight
  uint64_t sent = 0, got = 0, pstart = now_ns(), pend = pstart + (uint64_t)(seconds * 1e9);
  while (now_ns() < pend) {
    while (sent - got < 512) {
      put(c2s, &wpos, (uint32_t)sent, sent);
      sent++;
    }
    while (got < sent) {
      take(s2c, &rpos, &id);
      got++;
    }
  }
  double pipeRate = got / ((now_ns() - pstart) / 1e9);
  put(c2s, &wpos, 0, UINT64_MAX);
  take(s2c, &rpos, &id);
  waitpid(pid, NULL, 0);
  printf("{\"samples\":%zu,\"medianNs\":%llu,\"p99Ns\":%llu,\"seqPerSec\":%.0f,\"pipelinedPerSec\":%.0f}\n", n,
         (unsigned long long)samples[n / 2], (unsigned long long)samples[(size_t)(n * 0.99)], seqRate, pipeRate);
  return 0;
}
