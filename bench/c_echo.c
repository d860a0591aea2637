// The reference C UDP echo / relay, kept unchanged as the benchmarks' yardstick.
//
// Minimal C UDP echo / relay server (the "physical-ish" limit for a single core).
//   c_echo --port P [--mmsg] [--spin] [--relay-to 127.0.0.1:SINK]
// --spin: busy-poll with MSG_DONTWAIT (never sleeps; avoids cross-core wakeups)
// plain: recvfrom()+sendto() per datagram.  --mmsg: recvmmsg()/sendmmsg() batches of 64.
// --relay-to: forward every datagram to SINK from a second socket (one-way relay).
// Build: gcc -O2 -o c_echo c_echo.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define B 64
int main(int argc, char **argv) {
    int port = 9000, mmsg = 0, spin = 0;
    const char *relay = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mmsg")) mmsg = 1;
        else if (!strcmp(argv[i], "--spin")) spin = 1;
        else if (!strcmp(argv[i], "--relay-to") && i + 1 < argc) relay = argv[++i];
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(s, (void *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    int out = s;
    struct sockaddr_in rdst;
    if (relay) {
        char host[64]; int rp;
        sscanf(relay, "%63[^:]:%d", host, &rp);
        rdst = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(rp)};
        inet_pton(AF_INET, host, &rdst.sin_addr);
        out = socket(AF_INET, SOCK_DGRAM, 0);
        setsockopt(out, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    }
    printf("READY\n");
    fflush(stdout);
    static char buf[B][2048];
    struct sockaddr_in from[B];
    struct mmsghdr m[B];
    struct iovec iov[B];
    for (;;) {
        if (!mmsg) {
            socklen_t fl = sizeof from[0];
            ssize_t n = recvfrom(s, buf[0], 2048, spin ? MSG_DONTWAIT : 0, (void *)&from[0], &fl);
            if (n < 0) continue;
            if (relay) sendto(out, buf[0], n, 0, (void *)&rdst, sizeof rdst);
            else sendto(s, buf[0], n, 0, (void *)&from[0], fl);
        } else {
            for (int i = 0; i < B; i++) {
                iov[i].iov_base = buf[i];
                iov[i].iov_len = 2048;
                memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
                m[i].msg_hdr.msg_iov = &iov[i];
                m[i].msg_hdr.msg_iovlen = 1;
                m[i].msg_hdr.msg_name = &from[i];
                m[i].msg_hdr.msg_namelen = sizeof from[i];
            }
            int n = recvmmsg(s, m, B, spin ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
            if (n <= 0) continue;
            for (int i = 0; i < n; i++) {
                iov[i].iov_len = m[i].msg_len;
                if (relay) {
                    m[i].msg_hdr.msg_name = &rdst;
                    m[i].msg_hdr.msg_namelen = sizeof rdst;
                }
            }
            int off = 0;
            while (off < n) {
                int r = sendmmsg(out, m + off, n - off, 0);
                if (r <= 0) break;
                off += r;
            }
        }
    }
}
