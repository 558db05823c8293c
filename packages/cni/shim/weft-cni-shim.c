/*
 * weft-cni-shim: the `weft` CNI plugin executable. A thin forwarder (docs/adr/0006-cni-latency.md): the
 * container runtime execs it per pod; it sends the request (the CNI_* environment and the network config on
 * stdin) to weftd over a unix socket, prints weftd's answer on stdout and exits with weftd's exit code. The work
 * (IPAM, the node side, the pod side) is done by weftd's CNI server (packages/cni/src/server.ts).
 *
 * When the socket is absent or refuses (weftd down or restarting, a node without weftd), it executes the Node
 * plugin (the fallback), which does the work itself, on the same IPAM store and lock. The fallback's absolute
 * path is written into this binary by `weft-cni install` (FALLBACK_SLOT below): nothing is looked up on PATH and
 * no shell is involved.
 *
 * Wire format (HTTP/1.1 over the unix socket, one request per connection):
 *   POST /cni/v1 HTTP/1.1, Content-Type: application/x-weft-cni, Content-Length: N, Connection: close
 *   body: "CNI_X=value\0" for each CNI_* variable, an empty entry "\0", then stdin as is.
 *   answer: 200 with header Weft-Cni-Exit-Code: 0|1 and stdout as the body; any other status carries a CNI
 *   error object as the body (exit code 1).
 * Only CNI_* variables are forwarded (names of upper-case letters, digits and '_'). Sizes are bounded (MAX_STDIN, MAX_ENV, MAX_ANSWER), and so is the time
 * (the config key agentTimeoutSeconds, default 60 s, clamped to 1..600).
 *
 * libc only; built static by `npm run build` in packages/cni.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_STDIN (1024 * 1024)
#define MAX_ENV (64 * 1024)
#define MAX_ANSWER (4 * 1024 * 1024)
#define DEFAULT_SOCKET "/run/weft/cni.sock"
#define DEFAULT_TIMEOUT_S 60
#define FALLBACK_MARKER "@@WEFT-CNI-FALLBACK-PATH@@"
#define FALLBACK_SLOT_SIZE 4096

/* Patched by `weft-cni install`: the marker, then the fallback's absolute path, NUL-terminated. */
__attribute__((used)) char weft_fallback_slot[FALLBACK_SLOT_SIZE] = FALLBACK_MARKER;

extern char **environ;

struct buf {
  char *data;
  size_t len, cap;
};

static int buf_add(struct buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
  return 0;
}

static char cni_version[32] = "1.1.0";

/* Writes a CNI error object to stdout and returns the exit code 1. */
static int cni_error(int code, const char *msg, const char *detail) {
  struct buf o = {0};
  char head[96];
  snprintf(head, sizeof head, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"", cni_version, code);
  buf_add(&o, head, strlen(head));
  const char *parts[2] = {msg, detail};
  for (int k = 0; k < 2; k++) {
    const char *s = parts[k];
    if (!s) continue;
    if (k == 1) buf_add(&o, ": ", 2);
    for (; *s; s++) {
      unsigned char c = (unsigned char)*s;
      char esc[8];
      if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        buf_add(&o, esc, 2);
      } else if (c < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", c);
        buf_add(&o, esc, 6);
      } else {
        buf_add(&o, s, 1);
      }
    }
  }
  buf_add(&o, "\"}\n", 3);
  if (o.data) {
    ssize_t off = 0;
    while ((size_t)off < o.len) {
      ssize_t w = write(1, o.data + off, o.len - (size_t)off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += w;
    }
  }
  return 1;
}

/* ---- a minimal JSON scanner: finds a top-level key of the config object ---- */

static size_t skip_ws(const char *s, size_t i, size_t n) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

/* i at '"'; returns the index after the closing quote, or n on error. */
static size_t skip_string(const char *s, size_t i, size_t n) {
  for (i++; i < n; i++) {
    if (s[i] == '\\') i++;
    else if (s[i] == '"') return i + 1;
  }
  return n;
}

/* Skips one value starting at i; returns the index after it, or n on error. */
static size_t skip_value(const char *s, size_t i, size_t n) {
  if (i >= n) return n;
  if (s[i] == '"') return skip_string(s, i, n);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < n; i++) {
      if (s[i] == '"') {
        i = skip_string(s, i, n) - 1;
        continue;
      }
      if (s[i] == '{' || s[i] == '[') depth++;
      else if (s[i] == '}' || s[i] == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return n;
  }
  while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') i++;
  return i;
}

/* Finds top-level `key`; sets *vs and *ve to its raw value's span. Returns 0 when found. */
static int find_key(const char *s, size_t n, const char *key, size_t *vs, size_t *ve) {
  size_t i = skip_ws(s, 0, n);
  if (i >= n || s[i] != '{') return -1;
  i++;
  size_t klen = strlen(key);
  for (;;) {
    i = skip_ws(s, i, n);
    if (i >= n || s[i] != '"') return -1;
    size_t ks = i + 1, ke = skip_string(s, i, n);
    if (ke >= n) return -1;
    i = skip_ws(s, ke, n);
    if (i >= n || s[i] != ':') return -1;
    i = skip_ws(s, i + 1, n);
    size_t end = skip_value(s, i, n);
    if (end >= n) return -1;
    if (ke - 1 - ks == klen && memcmp(s + ks, key, klen) == 0) {
      *vs = i;
      *ve = end;
      return 0;
    }
    i = skip_ws(s, end, n);
    if (i >= n || s[i] != ',') return -1;
    i++;
  }
}

/* A plain JSON string value (no escapes) copied into out; 0 on success. */
static int string_value(const char *s, size_t vs, size_t ve, char *out, size_t outsz) {
  if (ve - vs < 2 || s[vs] != '"' || s[ve - 1] != '"') return -1;
  size_t len = ve - vs - 2;
  if (len + 1 > outsz || memchr(s + vs + 1, '\\', len) || memchr(s + vs + 1, 0, len)) return -1;
  memcpy(out, s + vs + 1, len);
  out[len] = 0;
  return 0;
}

/* ---- I/O with a deadline ---- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -1 : (r > 0 ? 1 : 0);
  }
}

static int read_stdin(struct buf *in) {
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      struct pollfd p = {.fd = 0, .events = POLLIN};
      if (poll(&p, 1, 60000) <= 0) return -1;
      continue;
    }
    if (r < 0) return errno == EBADF ? 0 : -1;
    if (r == 0) return 0;
    if (in->len + (size_t)r > MAX_STDIN) return -2;
    if (buf_add(in, chunk, (size_t)r) < 0) return -1;
  }
}

/* ---- fallback ---- */

static const char *fallback_path(void) {
  volatile char *slot = weft_fallback_slot;
  size_t m = strlen(FALLBACK_MARKER);
  if (memcmp((const char *)slot, FALLBACK_MARKER, m) != 0) return NULL;
  const char *p = (const char *)slot + m;
  if (p[0] != '/' || memchr(p, 0, FALLBACK_SLOT_SIZE - m) == NULL) return NULL;
  return p;
}

/* Replaces fd 0 with a file holding `in` (already read from stdin) and executes the Node plugin. */
static int run_fallback(const struct buf *in, const char *why) {
  const char *path = fallback_path();
  if (!path) {
    return cni_error(11, "weftd does not answer and no fallback plugin is configured in this weft executable; "
                         "install it with `weft-cni install --bin-dir DIR --conf-dir DIR` or start weftd", why);
  }
  int fd = memfd_create("weft-cni-stdin", MFD_CLOEXEC);
  if (fd < 0) return cni_error(11, "weftd does not answer and the fallback cannot be started (memfd_create failed)", strerror(errno));
  size_t off = 0;
  while (off < in->len) {
    ssize_t w = write(fd, in->data + off, in->len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return cni_error(11, "weftd does not answer and the fallback cannot be started (writing its stdin failed)", strerror(errno));
    off += (size_t)w;
  }
  if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) != 0) {
    return cni_error(11, "weftd does not answer and the fallback cannot be started (stdin)", strerror(errno));
  }
  close(fd);
  char *argv[] = {(char *)"weft", NULL};
  execve(path, argv, environ);
  char detail[4200];
  snprintf(detail, sizeof detail, "%s: %s", path, strerror(errno));
  return cni_error(11, "weftd does not answer and the fallback plugin cannot be executed", detail);
}

/* ---- the request ---- */

/* A CNI variable's entry: "CNI_" and at least one of [A-Z0-9_] up to the '=' (what weftd's server takes and
 * the Node plugin reads; anything else, such as "CNI_x-y=1", is not forwarded). */
static int is_cni_entry(const char *e) {
  if (strncmp(e, "CNI_", 4) != 0) return 0;
  const char *p = e + 4;
  if (*p == '=') return 0;
  for (; *p && *p != '='; p++) {
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) return 0;
  }
  return *p == '=';
}

static int build_request(struct buf *req, const struct buf *in) {
  struct buf body = {0};
  for (char **e = environ; *e; e++) {
    if (!is_cni_entry(*e)) continue;
    if (buf_add(&body, *e, strlen(*e) + 1) < 0) return -1;
    if (body.len > MAX_ENV) return -2;
  }
  if (buf_add(&body, "", 1) < 0) return -1;
  if (in->len && buf_add(&body, in->data, in->len) < 0) return -1;
  char head[256];
  int h = snprintf(head, sizeof head,
                   "POST /cni/v1 HTTP/1.1\r\nHost: weftd\r\nContent-Type: application/x-weft-cni\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   body.len);
  if (buf_add(req, head, (size_t)h) < 0 || buf_add(req, body.data, body.len) < 0) return -1;
  free(body.data);
  return 0;
}

/* Case-insensitive search for header `name` in [s, e); returns its value's start or NULL. */
static const char *header(const char *s, const char *e, const char *name) {
  size_t n = strlen(name);
  for (const char *p = s; p < e;) {
    const char *eol = memmem(p, (size_t)(e - p), "\r\n", 2);
    if (!eol) eol = e;
    if ((size_t)(eol - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      return v;
    }
    p = eol + 2;
  }
  return NULL;
}

int main(int argc, char **argv) {
  (void)argv;
  struct buf in = {0};
  if (argc > 1) {
    /* `weft --version` and the like: the Node plugin answers them. */
    const char *path = fallback_path();
    if (!path) {
      fprintf(stderr, "weft: the CNI plugin shim; no fallback plugin configured (install with weft-cni install)\n");
      return 2;
    }
    execve(path, argv, environ);
    fprintf(stderr, "weft: cannot execute %s: %s\n", path, strerror(errno));
    return 2;
  }

  int r = read_stdin(&in);
  size_t vs, ve;
  if (in.len && find_key(in.data, in.len, "cniVersion", &vs, &ve) == 0) {
    char v[32];
    if (string_value(in.data, vs, ve, v, sizeof v) == 0 && strspn(v, "0123456789.") == strlen(v)) strcpy(cni_version, v);
  }
  if (r == -2) return cni_error(7, "invalid network config: the config on stdin is larger than the 1 MiB limit of weft", NULL);
  if (r < 0) return cni_error(5, "reading the network config from stdin failed", strerror(errno));

  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)] = DEFAULT_SOCKET;
  if (in.len && find_key(in.data, in.len, "agentSocket", &vs, &ve) == 0) {
    if (string_value(in.data, vs, ve, sock_path, sizeof sock_path) != 0 || sock_path[0] != '/') {
      return cni_error(7, "invalid network config: \"agentSocket\" must be an absolute path shorter than 108 bytes without escapes", NULL);
    }
  }
  int timeout_s = DEFAULT_TIMEOUT_S;
  if (in.len && find_key(in.data, in.len, "agentTimeoutSeconds", &vs, &ve) == 0) {
    char *end;
    char num[16] = {0};
    if (ve - vs < sizeof num) memcpy(num, in.data + vs, ve - vs);
    long t = strtol(num, &end, 10);
    if (num[0] == 0 || *end != 0 || t < 1 || t > 600) {
      return cni_error(7, "invalid network config: \"agentTimeoutSeconds\" must be a whole number of seconds from 1 to 600", NULL);
    }
    timeout_s = (int)t;
  }
  int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return cni_error(11, "cannot create a unix socket", strerror(errno));
  struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds a connect to a full backlog */
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, sock_path);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int e = errno;
    close(fd);
    if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR || e == EACCES || e == EPERM || e == ENOTSOCK) {
      char why[200];
      snprintf(why, sizeof why, "%s: %s", sock_path, strerror(e));
      return run_fallback(&in, why);
    }
    return cni_error(11, "connecting to weftd's CNI socket failed; try again later", strerror(e));
  }

  struct buf req = {0};
  int br = build_request(&req, &in);
  if (br == -2) return cni_error(4, "the CNI_* environment is larger than the 64 KiB limit of weft", NULL);
  if (br < 0) return cni_error(5, "out of memory building the request", NULL);
  for (size_t off = 0; off < req.len;) {
    int w = wait_fd(fd, POLLOUT, deadline);
    if (w == 0) return cni_error(11, "weftd did not take the request in time; try again later", sock_path);
    ssize_t n = w < 0 ? -1 : send(fd, req.data + off, req.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return cni_error(11, "weftd closed the connection while the request was sent (restarting?); try again later", strerror(errno));
    off += (size_t)n;
  }

  struct buf ans = {0};
  char chunk[65536];
  for (;;) {
    int w = wait_fd(fd, POLLIN, deadline);
    if (w == 0) {
      char d[64];
      snprintf(d, sizeof d, "no answer within %d s", timeout_s);
      return cni_error(11, "weftd did not answer in time; try again later", d);
    }
    ssize_t n = w < 0 ? -1 : recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return cni_error(11, "reading weftd's answer failed (restarting?); try again later", strerror(errno));
    if (n == 0) break;
    if (ans.len + (size_t)n > MAX_ANSWER) return cni_error(5, "weftd's answer is larger than the 4 MiB limit", NULL);
    if (buf_add(&ans, chunk, (size_t)n) < 0) return cni_error(5, "out of memory reading the answer", NULL);
  }
  close(fd);

  const char *end = ans.len ? memmem(ans.data, ans.len, "\r\n\r\n", 4) : NULL;
  if (ans.len == 0 || !end || ans.len < 12 || strncmp(ans.data, "HTTP/1.", 7) != 0) {
    return cni_error(11, "weftd closed the connection without a complete answer (restarting?); try again later", NULL);
  }
  int status = atoi(ans.data + 9);
  const char *body = end + 4;
  size_t body_len = ans.len - (size_t)(body - ans.data);
  const char *cl = header(ans.data, end, "Content-Length");
  if (cl && (size_t)strtoul(cl, NULL, 10) != body_len) {
    return cni_error(11, "weftd's answer was cut short (restarting?); try again later", NULL);
  }
  const char *ec = header(ans.data, end, "Weft-Cni-Exit-Code");
  int exit_code = status == 200 && ec ? atoi(ec) : 1;
  if (body_len == 0 && status != 200) {
    char d[32];
    snprintf(d, sizeof d, "HTTP status %d", status);
    return cni_error(11, "weftd refused the request", d);
  }
  for (size_t off = 0; off < body_len;) {
    ssize_t w = write(1, body + off, body_len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 1;
    off += (size_t)w;
  }
  return exit_code;
}
