// vsockio: nc for AF_VSOCK stream sockets, run inside the lab's L2 guests (busybox nc has no
// vsock).
//
//   vsockio [-v] listen PORT        accept one connection on PORT (any CID), then relay
//   vsockio [-v] connect CID PORT   connect to CID:PORT (2 is the host), then relay
//   vsockio cid                     print this machine's own CID (from /dev/vsock)
//
// Relaying copies stdin to the connection and the connection to stdout until both ends (relay.h).
// listen says "vsockio: listening on port PORT" on stderr once a peer can connect. -v adds the
// byte counts and the time on stderr at the end. Exit status: 0 when both directions ended
// cleanly, 1 on an error (said on stderr), 2 on usage errors.
#include "relay.h"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>

__attribute__((noreturn)) static void usage(void) {
  fprintf(stderr,
          "usage: vsockio [-v] listen PORT | vsockio [-v] connect CID PORT | vsockio cid\n");
  exit(2);
}

static unsigned parse_u32(const char* text) {
  char* end = NULL;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value > 0xffffffffUL) {
    fprintf(stderr, "vsockio: '%s': want a number from 0 to 4294967295\n", text);
    exit(2);
  }
  return (unsigned)value;
}

static struct sockaddr_vm address(unsigned cid, unsigned port) {
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  return addr;
}

static int vsock_socket(void) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) relay_die("socket(AF_VSOCK) (is a vsock transport loaded?)");
  return fd;
}

int main(int argc, char** argv) {
  relay_init("vsockio");
  int verbose = 0;
  int arg = 1;
  if (arg < argc && strcmp(argv[arg], "-v") == 0) {
    verbose = 1;
    arg++;
  }
  if (arg >= argc) usage();
  const char* mode = argv[arg++];
  int sock = -1;
  if (strcmp(mode, "cid") == 0 && arg == argc) {
    int dev = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (dev < 0) relay_die("/dev/vsock");
    unsigned cid = 0;
    if (ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) != 0)
      relay_die("/dev/vsock: get local cid");
    printf("%u\n", cid);
    return 0;
  } else if (strcmp(mode, "listen") == 0 && arg + 1 == argc) {
    unsigned port = parse_u32(argv[arg]);
    int listener = vsock_socket();
    struct sockaddr_vm addr = address(VMADDR_CID_ANY, port);
    if (bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0) relay_die("bind");
    if (listen(listener, 1) != 0) relay_die("listen");
    fprintf(stderr, "vsockio: listening on port %u\n", port);
    do {
      sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    } while (sock < 0 && errno == EINTR);
    if (sock < 0) relay_die("accept");
    close(listener);
  } else if (strcmp(mode, "connect") == 0 && arg + 2 == argc) {
    unsigned cid = parse_u32(argv[arg]);
    unsigned port = parse_u32(argv[arg + 1]);
    sock = vsock_socket();
    struct sockaddr_vm addr = address(cid, port);
    if (connect(sock, (struct sockaddr*)&addr, sizeof addr) != 0) {
      fprintf(stderr, "vsockio: connect to %u:%u: %s\n", cid, port, strerror(errno));
      return 1;
    }
  } else {
    usage();
  }
  relay(sock, verbose);
  return 0;
}
