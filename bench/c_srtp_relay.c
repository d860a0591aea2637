// The C SRTP relay: the yardstick for the media node's relay path (bench/relay.py).
//
// It does per packet what the node's engine does, with libsrtp and nothing else:
//   recvfrom one datagram (as uvloop does for the node),
//   drop it unless it comes from the sender's latched address and is RTP (RFC 7983),
//   srtp_unprotect with the sender's inbound context (tag, replay window of 1024),
//   check the SSRC is the sender's,
//   for every receiver: copy, srtp_protect with that receiver's outbound context, sendto.
// One decrypt per input, one protect per output: an SFU hop.
//
//   c_srtp_relay --port P --key HEX60 --from 127.0.0.1:SRC --to IP:PORT [--to ...]
//                [--ssrc 0x11223344]
// Receivers' keys are random (nobody decrypts the output; the generator counts it).
// Prints READY once bound; counters on SIGTERM are not needed (the generator counts).
// Build: gcc -O2 -o c_srtp_relay c_srtp_relay.c -lsrtp2
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <srtp2/srtp.h>

#define MAX_TO 64
#define MAXPKT 2048

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static int parse_addr(const char *text, struct sockaddr_in *out) {
    char host[64];
    int port;
    if (sscanf(text, "%63[^:]:%d", host, &port) != 2) return -1;
    *out = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static srtp_t session(unsigned char *key, int inbound) {
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    srtp_crypto_policy_set_rtp_default(&policy.rtp);    // AES_CM_128_HMAC_SHA1_80
    srtp_crypto_policy_set_rtcp_default(&policy.rtcp);
    policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    policy.key = key;
    policy.window_size = 1024;  // the node's replay window (wire/srtp.py)
    policy.allow_repeat_tx = !inbound;
    srtp_t s;
    if (srtp_create(&s, &policy)) { fprintf(stderr, "srtp_create failed\n"); exit(1); }
    return s;
}

int main(int argc, char **argv) {
    int port = 0, n_to = 0;
    uint32_t ssrc = 0x11223344;
    const char *keyhex = NULL;
    struct sockaddr_in from = {0}, to[MAX_TO];
    for (int i = 1; i < argc; i++) {
        char *a = argv[i], *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "%s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--key")) keyhex = v;
        else if (!strcmp(a, "--ssrc")) ssrc = (uint32_t)strtoul(v, 0, 0);
        else if (!strcmp(a, "--from")) { if (parse_addr(v, &from)) return 2; }
        else if (!strcmp(a, "--to") && n_to < MAX_TO) { if (parse_addr(v, &to[n_to++])) return 2; }
        else { fprintf(stderr, "bad arg %s\n", a); return 2; }
    }
    if (!port || !keyhex || strlen(keyhex) != 60 || !n_to || !from.sin_port) {
        fprintf(stderr, "usage: c_srtp_relay --port P --key HEX60 --from IP:PORT --to IP:PORT...\n");
        return 2;
    }
    unsigned char in_key[30], out_key[MAX_TO][30];
    for (int k = 0; k < 30; k++) in_key[k] = (unsigned char)(hexval(keyhex[2 * k]) << 4 | hexval(keyhex[2 * k + 1]));
    if (srtp_init()) { fprintf(stderr, "srtp_init failed\n"); return 1; }
    srtp_t in = session(in_key, 1), out[MAX_TO];
    FILE *urandom = fopen("/dev/urandom", "rb");
    for (int r = 0; r < n_to; r++) {
        if (!urandom || fread(out_key[r], 1, 30, urandom) != 30) { fprintf(stderr, "urandom\n"); return 1; }
        out[r] = session(out_key[r], 0);
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(s, (void *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    printf("READY\n");
    fflush(stdout);
    static uint8_t buf[MAXPKT], obuf[MAXPKT + SRTP_MAX_TRAILER_LEN];
    unsigned long drops = 0;
    for (;;) {
        struct sockaddr_in src;
        socklen_t sl = sizeof src;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (void *)&src, &sl);
        if (n < 12) continue;
        // the latched path: the sender's 5-tuple, then RFC 7983 demux (RTP 128-191, not RTCP)
        if (src.sin_port != from.sin_port || src.sin_addr.s_addr != from.sin_addr.s_addr
            || buf[0] < 128 || buf[0] > 191 || (buf[1] >= 192 && buf[1] <= 223)) { drops++; continue; }
        int len = (int)n;
        if (srtp_unprotect(in, buf, &len)) { drops++; continue; }
        uint32_t got = (uint32_t)buf[8] << 24 | buf[9] << 16 | buf[10] << 8 | buf[11];
        if (got != ssrc) { drops++; continue; }
        for (int r = 0; r < n_to; r++) {
            memcpy(obuf, buf, len);
            int olen = len;
            if (srtp_protect(out[r], obuf, &olen)) { drops++; continue; }
            sendto(s, obuf, olen, 0, (void *)&to[r], sizeof to[r]);
        }
    }
}
