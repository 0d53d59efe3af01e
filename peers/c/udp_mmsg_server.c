#define _GNU_SOURCE
/* A minimal single-threaded UDP uppercase-echo server: the near-limit reference
 * of the peer benchmark's UDP loads. Usage: udp_mmsg_server PORT (binds
 * 127.0.0.1). Blocking socket, SO_RCVBUF 4 MiB (as upecho asks for), up to 64
 * datagrams per recvmmsg; each is upper-cased (a-z) in place and sent back to
 * its source with one sendmmsg per batch. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define DGRAM 65536

static unsigned char bufs[BATCH][DGRAM];

static void upper(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] -= (unsigned char)((unsigned)(p[i] - 'a') < 26u) << 5;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: udp_mmsg_server PORT\n"); return 2; }
    int s = socket(AF_INET, SOCK_DGRAM, 0), rcvbuf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* best effort: capped by rmem_max */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    struct sockaddr_in peers[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iovs[i].iov_base = bufs[i];
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &peers[i];
    }
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iovs[i].iov_len = DGRAM;
            msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        /* Blocks for the first datagram, then takes whatever else is queued. */
        int n = recvmmsg(s, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            upper(bufs[i], msgs[i].msg_len);
            iovs[i].iov_len = msgs[i].msg_len;
        }
        for (int sent = 0; sent < n;) {
            int r = sendmmsg(s, msgs + sent, (unsigned)(n - sent), 0);
            if (r > 0) sent += r;
            else if (r < 0 && errno == EINTR) continue;
            else sent++; /* this datagram cannot be sent: drop it, go on with the rest */
        }
    }
}
