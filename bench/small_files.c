// SPDX-License-Identifier: Apache-2.0
// small_files: one metadata phase over N small files, timed, for bench/run.py.
//
//   small_files DIR N create|stat|unlink [SIZE]
//
// create: open(O_CREAT|O_EXCL|O_WRONLY) + write SIZE bytes (default 4096) + close
// stat:   stat() each file
// unlink: unlink() each file
//
// Files are DIR/f0000000 ... in one directory. Prints one line
// "PHASE N SECONDS OPS_PER_S" on stdout; exits 1 on the first failing call.
// Plain C and one process, so the time is the file system's, not an
// interpreter's: bench/run.py compiles it with cc -O2 into its temp directory.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char* what, const char* path) {
  fprintf(stderr, "small_files: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: small_files DIR N create|stat|unlink [SIZE]\n");
    return 2;
  }
  const char* dir = argv[1];
  long n = strtol(argv[2], NULL, 10);
  const char* phase = argv[3];
  long size = argc == 5 ? strtol(argv[4], NULL, 10) : 4096;
  if (n <= 0 || size < 0 || size > (1L << 20)) {
    fprintf(stderr, "small_files: bad N or SIZE\n");
    return 2;
  }
  char* buf = malloc(size > 0 ? (size_t)size : 1);
  if (!buf) return 1;
  memset(buf, 'x', size > 0 ? (size_t)size : 1);
  char path[4096];
  struct stat st;
  double t0 = now_s();
  for (long i = 0; i < n; ++i) {
    snprintf(path, sizeof path, "%s/f%07ld", dir, i);
    if (strcmp(phase, "create") == 0) {
      int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) die("open", path);
      if (size > 0 && write(fd, buf, (size_t)size) != size) die("write", path);
      if (close(fd) != 0) die("close", path);
    } else if (strcmp(phase, "stat") == 0) {
      if (stat(path, &st) != 0) die("stat", path);
      if (st.st_size != size) {
        fprintf(stderr, "small_files: %s has size %lld, expected %ld\n", path, (long long)st.st_size, size);
        return 1;
      }
    } else if (strcmp(phase, "unlink") == 0) {
      if (unlink(path) != 0) die("unlink", path);
    } else {
      fprintf(stderr, "small_files: unknown phase %s\n", phase);
      return 2;
    }
  }
  double dt = now_s() - t0;
  printf("%s %ld %.6f %.1f\n", phase, n, dt, (double)n / dt);
  free(buf);
  return 0;
}
