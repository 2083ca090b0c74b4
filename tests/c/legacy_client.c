/*
 * A probe as libtelemetry writes it: one connection per record, the frame
 * built byte by byte with plain socket calls, no reply read.
 *
 * usage: legacy_client SOCKET CLASSIFICATION SEVERITY PAYLOAD COUNT [CFG_PATH]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0)
                        return -1;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc < 6) {
                fprintf(stderr, "usage: %s SOCKET CLASS SEVERITY PAYLOAD COUNT [CFG]\n", argv[0]);
                return 2;
        }
        const char *cfg = argc > 6 ? argv[6] : NULL;
        long count = atol(argv[5]);
        char headers[4096];
        int header_size = snprintf(headers, sizeof(headers),
                "record_format_version: 4\n"
                "classification: %s\n"
                "severity: %s\n"
                "machine_id: FFFFFFFF\n"
                "creation_timestamp: %ld\n"
                "arch: x86_64\n"
                "host_type: no_sv_file|no_pn_file|no_pvr_file\n"
                "build: 0\n"
                "kernel_version: 6.1.0\n"
                "payload_format_version: 1\n"
                "system_name: clear-linux-os\n"
                "board_name: no_bn_file|no_bv_file\n"
                "cpu_model: Legacy CPU\n"
                "bios_version: no_bv_file\n"
                "event_id: 0123456789abcdef0123456789abcdef\n",
                argv[2], argv[3], (long)time(NULL));
        size_t payload_size = strlen(argv[4]);
        size_t cfg_size = cfg ? 4 + strlen(cfg) + 1 : 0;
        uint32_t total = (uint32_t)(4 + cfg_size + 4 + (size_t)header_size + payload_size + 1);
        char *frame = calloc(1, total);
        size_t off = 0;
        memcpy(frame + off, &total, 4);
        off += 4;
        if (cfg) {
                memcpy(frame + off, "CFG:", 4);
                memcpy(frame + off + 4, cfg, strlen(cfg) + 1);
                off += cfg_size;
        }
        uint32_t hs = (uint32_t)header_size;
        memcpy(frame + off, &hs, 4);
        off += 4;
        memcpy(frame + off, headers, (size_t)header_size);
        off += (size_t)header_size;
        memcpy(frame + off, argv[4], payload_size);

        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
        for (long i = 0; i < count; i++) {
                int fd = socket(AF_UNIX, SOCK_STREAM, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                        perror("connect");
                        return 1;
                }
                if (write_all(fd, frame, total) < 0) {
                        perror("write");
                        return 1;
                }
                close(fd);
        }
        free(frame);
        return 0;
}
