/* fake_guest_agent — a FAKE qemu-guest-agent for fault injection in tests
 * (named as such; the tests have no guest OS to run the real one in).
 *
 *   fake_guest_agent SOCKET LOG MODE
 *
 * Listens on SOCKET (as QEMU's virtio-serial chardev does on the host side)
 * and answers the commands refpoint sends: guest-sync-delimited (0xFF then
 * the id), guest-sync, guest-fsfreeze-freeze / -thaw / -status. Every
 * command is logged as "<realtime ns> <command> <frozen-after>" to LOG.
 * MODE: ok | fail-freeze (freeze answers an error, having frozen nothing) |
 *       hang-freeze (freeze never answers, but freezes) | mute (never
 *       answers anything) | fail-thaw (thaw answers an error, stays frozen) |
 *       flood (a hostile guest: answers the first command with 1 MiB and no
 *       line end).
 * Serves one client at a time, forever (until killed). */
#define _GNU_SOURCE 1
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static FILE *logf_;
static int frozen;

static void logcmd(const char *cmd)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  fprintf(logf_, "%lld %s %d\n", (long long)ts.tv_sec * 1000000000 + ts.tv_nsec, cmd, frozen);
  fflush(logf_);
}

static void reply(int c, const char *s)
{
  ssize_t w = write(c, s, strlen(s));
  (void)w;
}

int main(int argc, char **argv)
{
  if (argc != 4) {
    fprintf(stderr, "usage: fake_guest_agent SOCKET LOG MODE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const char *mode = argv[3];
  logf_ = fopen(argv[2], "a");
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[1]);
  unlink(argv[1]);
  if (!logf_ || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4) < 0) {
    perror("fake_guest_agent");
    return 1;
  }
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0)
      continue;
    char buf[65536];
    size_t len = 0;
    for (;;) {
      ssize_t r = read(c, buf + len, sizeof buf - 1 - len);
      if (r <= 0)
        break;
      len += (size_t)r;
      /* requests are JSON objects, one after another, no delimiter needed */
      for (;;) {
        json_error_t je;
        json_t *j = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &je);
        if (!j)
          break;
        size_t used = (size_t)je.position;
        memmove(buf, buf + used, len - used);
        len -= used;
        const char *cmd = json_string_value(json_object_get(j, "execute"));
        cmd = cmd ? cmd : "?";
        char out[256];
        if (!strcmp(mode, "mute")) {
          logcmd(cmd);
        } else if (!strcmp(mode, "flood")) {
          logcmd(cmd);
          static char junk[1 << 20];
          memset(junk, 'x', sizeof junk);
          junk[0] = '"';
          ssize_t w = write(c, junk, sizeof junk);
          (void)w;
        } else if (!strcmp(cmd, "guest-sync-delimited") || !strcmp(cmd, "guest-sync")) {
          json_int_t id = json_integer_value(json_object_get(json_object_get(j, "arguments"), "id"));
          snprintf(out, sizeof out, "%s{\"return\": %lld}\n",
                   cmd[10] == '-' ? "\xff" : "", (long long)id);
          logcmd(cmd);
          reply(c, out);
        } else if (!strcmp(cmd, "guest-fsfreeze-freeze")) {
          if (!strcmp(mode, "fail-freeze")) {
            logcmd(cmd);
            reply(c, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: cannot freeze /\"}}\n");
          } else {
            frozen = 1;
            logcmd(cmd);
            if (strcmp(mode, "hang-freeze"))
              reply(c, "{\"return\": 2}\n");
          }
        } else if (!strcmp(cmd, "guest-fsfreeze-thaw")) {
          if (!strcmp(mode, "fail-thaw")) {
            logcmd(cmd);
            reply(c, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: thaw failed\"}}\n");
          } else {
            int n = frozen ? 2 : 0;
            frozen = 0;
            logcmd(cmd);
            snprintf(out, sizeof out, "{\"return\": %d}\n", n);
            reply(c, out);
          }
        } else if (!strcmp(cmd, "guest-fsfreeze-status")) {
          logcmd(cmd);
          reply(c, frozen ? "{\"return\": \"frozen\"}\n" : "{\"return\": \"thawed\"}\n");
        } else {
          logcmd(cmd);
          reply(c, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"fake: unknown\"}}\n");
        }
        json_decref(j);
      }
    }
    close(c);
  }
}
