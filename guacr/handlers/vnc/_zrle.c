/*
 * guacr ZRLE tile decoder: parses the inflated tile stream of one ZRLE rectangle
 * into an (h, w, cpixel) byte array.
 *
 * Why C: tile parsing is a byte loop (variable-length run tokens), and the numpy
 * version in zrle.py pays a fixed cost of tens of numpy calls per 64x64 tile plus a
 * Python loop per run. Measured (2-core shared machine, two runs each, Python -> C):
 *   - benchmarks/bench_rfb_decode.py, tile decoding alone per rect: x11vnc full
 *     1024x768 frame (one rect) 7.9-8.2 -> 0.71-0.78 ms (11x); Xtigervnc text rects
 *     (6 kpx) 0.016 -> 0.005 ms, photo rects (43 kpx) 0.028 -> 0.009 ms, flat rects
 *     (18 kpx) 0.088 -> 0.014 ms. Whole ZRLE frame with inflate and colour conversion:
 *     x11vnc 11.2-11.5 -> 3.7 ms, Xtigervnc 6.8-8.4 -> 4.1-4.6 ms.
 *   - benchmarks/bench_vnc.py --scene paced (scrolling xterm through guacr): tile
 *     decoding fell from 5.7% to 0.9% of the VNC worker's py-spy samples; proxy CPU
 *     per frame 6.2-6.6 -> 6.1 ms (A/B runs alternated; the total is noisy).
 *
 * The bytes come from the VNC server, which may be hostile: every read is checked
 * against the input length and every write lands in a tile buffer whose bounds are
 * checked before each run is written. Palette indices are masked into a 128-entry
 * table, so an out-of-range index reads zeros (reported as an error at the end of
 * the tile, after truncation and overflow checks, which is the order zrle.py's
 * Python reference decoder reports them in; tests compare the two on fuzzed input).
 *
 * Run lengths: a run whose length so far exceeds the pixels left in its tile is an
 * overflow as soon as that is known, without reading the rest of its length bytes.
 *
 * Called through ctypes (no Python headers); ctypes releases the GIL for the call.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GZRLE_ABI 1
#define TILE 64

/* Error codes, mapped to RFBProtocolError messages in native.py. */
#define E_TRUNCATED (-1)
#define E_SUBENCODING (-2) /* *end is the offset of the sub-encoding byte */
#define E_PALETTE_INDEX (-3)
#define E_OVERFLOW (-4)
#define E_ARGS (-5)

int gzrle_abi(void) { return GZRLE_ABI; }

/* Write n copies of one cps-byte pixel. */
static void fill(uint8_t *dst, const uint8_t *px, size_t n, size_t cps) {
    size_t i;
    switch (cps) {
    case 1:
        memset(dst, px[0], n);
        break;
    case 2: {
        uint16_t v;
        memcpy(&v, px, 2);
        for (i = 0; i < n; i++) memcpy(dst + 2 * i, &v, 2);
        break;
    }
    case 3: {
        uint8_t a = px[0], b = px[1], c = px[2];
        for (i = 0; i < n; i++) {
            dst[3 * i] = a;
            dst[3 * i + 1] = b;
            dst[3 * i + 2] = c;
        }
        break;
    }
    default: {
        uint32_t v;
        memcpy(&v, px, 4);
        for (i = 0; i < n; i++) memcpy(dst + 4 * i, &v, 4);
        break;
    }
    }
}

/* Read a run's length bytes (1 + each byte, 255 continues) at *pos. Fails with
 * E_OVERFLOW once the length exceeds `left`, E_TRUNCATED at the end of input. */
static int run_length(const uint8_t *buf, size_t len, size_t *pos, size_t left, size_t *out) {
    size_t n = 1, p = *pos;
    uint8_t c;
    do {
        if (p >= len) return E_TRUNCATED;
        c = buf[p++];
        n += c;
        if (n > left) return E_OVERFLOW;
    } while (c == 255);
    *pos = p;
    *out = n;
    return 0;
}

/* Palette (sub-encodings 2..16 and 130..255): `size` cpixels at *pos, into a
 * zero-filled 128-entry table so any 7-bit index stays inside it. */
static int read_palette(const uint8_t *buf, size_t len, size_t *pos, size_t size, size_t cps,
                        uint8_t pal[128][4]) {
    size_t i;
    if (len - *pos < size * cps) return E_TRUNCATED;
    memset(pal, 0, 128 * 4);
    for (i = 0; i < size; i++) memcpy(pal[i], buf + *pos + i * cps, cps);
    *pos += size * cps;
    return 0;
}

/* Packed palette indices: rows of tw indices of 1, 2 or 4 bits, MSB first, each row
 * padded to a byte. */
static int packed(const uint8_t *buf, size_t len, size_t *pos, size_t tw, size_t th, size_t cps,
                  size_t size, uint8_t pal[128][4], uint8_t *tile) {
    size_t bits = size == 2 ? 1 : size <= 4 ? 2 : 4;
    size_t row_bytes = (tw * bits + 7) / 8, x, y;
    unsigned mask = (1u << bits) - 1, maxidx = 0;
    if (len - *pos < row_bytes * th) return E_TRUNCATED;
    for (y = 0; y < th; y++) {
        const uint8_t *row = buf + *pos + y * row_bytes;
        uint8_t *dst = tile + y * tw * cps;
        for (x = 0; x < tw; x++) {
            size_t bit = x * bits;
            unsigned idx = ((unsigned)row[bit >> 3] >> (8 - bits - (bit & 7))) & mask;
            if (idx > maxidx) maxidx = idx;
            memcpy(dst + x * cps, pal[idx], cps);
        }
    }
    *pos += row_bytes * th;
    return maxidx >= size ? E_PALETTE_INDEX : 0;
}

static int plain_rle(const uint8_t *buf, size_t len, size_t *pos, size_t npix, size_t cps,
                     uint8_t *tile) {
    size_t filled = 0, p = *pos, n;
    int rc;
    while (filled < npix) {
        const uint8_t *px = buf + p;
        if (len - p < cps) return E_TRUNCATED;
        p += cps;
        rc = run_length(buf, len, &p, npix - filled, &n);
        if (rc) return rc;
        fill(tile + filled * cps, px, n, cps);
        filled += n;
    }
    *pos = p;
    return 0;
}

static int palette_rle(const uint8_t *buf, size_t len, size_t *pos, size_t npix, size_t cps,
                       size_t size, uint8_t pal[128][4], uint8_t *tile) {
    size_t filled = 0, p = *pos, n;
    unsigned maxidx = 0;
    int rc;
    while (filled < npix) {
        unsigned b, idx;
        if (p >= len) return E_TRUNCATED;
        b = buf[p++];
        idx = b & 127;
        if (idx > maxidx) maxidx = idx;
        if (b < 128) {
            memcpy(tile + filled * cps, pal[idx], cps);
            filled++;
            continue;
        }
        rc = run_length(buf, len, &p, npix - filled, &n);
        if (rc) return rc;
        fill(tile + filled * cps, pal[idx], n, cps);
        filled += n;
    }
    *pos = p;
    return maxidx >= size ? E_PALETTE_INDEX : 0;
}

/* Decode all tiles of a w x h rectangle from buf into out (h * w * cps bytes, rows
 * of w pixels). Returns 0 and the offset after the last tile in *end, or a negative
 * E_* code (for E_SUBENCODING *end is the offset of the offending byte). */
int gzrle_decode_tiles(const uint8_t *buf, size_t len, uint8_t *out, int w, int h, int cps,
                       size_t *end) {
    uint8_t tile[TILE * TILE * 4];
    uint8_t pal[128][4];
    size_t pos = 0, c = (size_t)cps, width = (size_t)w, height = (size_t)h, stride, tx, ty, y;
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535 || cps < 1 || cps > 4) return E_ARGS;
    stride = width * c;
    for (ty = 0; ty < height; ty += TILE) {
        size_t th = height - ty < TILE ? height - ty : TILE;
        for (tx = 0; tx < width; tx += TILE) {
            size_t tw = width - tx < TILE ? width - tx : TILE;
            size_t npix = tw * th, row = tw * c;
            uint8_t *dst = out + ty * stride + tx * c;
            unsigned sub;
            int rc;
            if (pos >= len) return E_TRUNCATED;
            sub = buf[pos++];
            if (sub == 0) { /* raw cpixels, copied straight into place */
                if (len - pos < npix * c) return E_TRUNCATED;
                for (y = 0; y < th; y++) memcpy(dst + y * stride, buf + pos + y * row, row);
                pos += npix * c;
                continue;
            }
            if (sub == 1) { /* solid */
                if (len - pos < c) return E_TRUNCATED;
                for (y = 0; y < th; y++) fill(dst + y * stride, buf + pos, tw, c);
                pos += c;
                continue;
            }
            if (sub <= 16) {
                rc = read_palette(buf, len, &pos, sub, c, pal);
                if (!rc) rc = packed(buf, len, &pos, tw, th, c, sub, pal, tile);
            } else if (sub == 128) {
                rc = plain_rle(buf, len, &pos, npix, c, tile);
            } else if (sub >= 130) {
                rc = read_palette(buf, len, &pos, sub - 128, c, pal);
                if (!rc) rc = palette_rle(buf, len, &pos, npix, c, sub - 128, pal, tile);
            } else {
                *end = pos - 1;
                return E_SUBENCODING;
            }
            if (rc) return rc;
            for (y = 0; y < th; y++) memcpy(dst + y * stride, tile + y * row, row);
        }
    }
    *end = pos;
    return 0;
}
