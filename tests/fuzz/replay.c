/* Replays a fuzz target's corpus without libFuzzer, so that make test (and
 * its ASan build) re-checks every seed and every past finding.
 * usage: replay_X DIR... */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n);

int main(int argc, char **argv)
{
  int n = 0;
  for (int a = 1; a < argc; a++) {
    DIR *d = opendir(argv[a]);
    if (!d) {
      perror(argv[a]);
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.')
        continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", argv[a], e->d_name);
      FILE *f = fopen(p, "rb");
      if (!f)
        continue;
      unsigned char *buf = malloc(1 << 20);
      size_t len = fread(buf, 1, 1 << 20, f);
      fclose(f);
      LLVMFuzzerTestOneInput(buf, len);
      free(buf);
      n++;
    }
    closedir(d);
  }
  printf("replayed %d inputs\n", n);
  return n > 0 ? 0 : 1;
}
