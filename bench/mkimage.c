/* mkimage — bench helper: a sparse raw file of SIZE bytes in which PCT % of
 * the 64 KiB clusters, chosen at random (fixed seed), hold random data.
 * usage: mkimage FILE SIZE PCT SEED */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t s;
static uint64_t rnd(void)
{
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

int main(int argc, char **argv)
{
  if (argc != 5) {
    fprintf(stderr, "usage: mkimage FILE SIZE PCT SEED\n");
    return 2;
  }
  uint64_t size = strtoull(argv[2], NULL, 0), n = size / 65536;
  int pct = atoi(argv[3]);
  s = strtoull(argv[4], NULL, 0) | 1;
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
    perror(argv[1]);
    return 1;
  }
  uint32_t *idx = malloc(n * sizeof *idx);
  for (uint64_t i = 0; i < n; i++)
    idx[i] = (uint32_t)i;
  uint64_t k = n * (uint64_t)pct / 100;
  for (uint64_t i = 0; i < k; i++) { /* partial Fisher-Yates */
    uint64_t j = i + rnd() % (n - i);
    uint32_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  uint64_t buf[8192];
  for (uint64_t i = 0; i < k; i++) {
    for (int w = 0; w < 8192; w++)
      buf[w] = rnd();
    if (pwrite(fd, buf, sizeof buf, (off_t)idx[i] * 65536) != (ssize_t)sizeof buf) {
      perror("pwrite");
      return 1;
    }
  }
  close(fd);
  printf("%llu of %llu clusters written\n", (unsigned long long)k, (unsigned long long)n);
  return 0;
}
