/*
 * guacr palette indexer: turns an RGBX image (a strided view of the framebuffer) into
 * a palette of at most 256 colours and PNG scanlines of palette indices, in one pass.
 *
 * Why C: desktop text and UI go out as palette PNGs (smaller and quicker to deflate
 * than RGB). In Python the palette took Pillow's getcolors, a Python loop over its
 * result, and several numpy passes per image; on a scrolling xterm over VNC that was
 * about a third of guacr's encoding time, for images of a few thousand pixels each
 * where numpy's per-call costs dominate. Measured on this project's 2-core machine:
 *   - benchmarks/bench_display.py --micro, a palette PNG with the Python indexer ->
 *     with this one: text 512x46 0.17 -> 0.09 ms, text 512x256 0.90 -> 0.55 ms
 *     (deflate is most of what is left), same bytes;
 *   - the images of a scrolling xterm over VNC (2154 captured, median 6 kpx):
 *     0.23 -> 0.13 ms each; the whole VNC pipeline replayed offline from captured
 *     server bytes (decode, plan, encode): 4.3-4.8 -> 3.7-3.9 ms per frame.
 *
 * Colours are 32-bit pixels masked to their RGB bytes, so the padding byte never
 * makes two colours of one. Lookups go through a small open-addressed hash table; a
 * pixel equal to its left neighbour (most of them, in text) skips the lookup.
 *
 * Called through ctypes (no Python headers); ctypes releases the GIL for the call.
 */
#include <stddef.h>
#include <stdint.h>

#define GPAL_ABI 1
#define MAX_COLOURS 256
#define SLOTS 1024 /* power of two, at least 2 * MAX_COLOURS */
#define EMPTY 0xFFFFFFFFu /* never a masked colour: the mask clears a byte */

int gpal_abi(void) { return GPAL_ABI; }

/*
 * Index every step-th pixel of every step-th row of a w x h image whose rows are
 * `stride` pixels apart. Writes up to 256 colours to `palette` (first-seen order)
 * and, unless `rows` is NULL, each sampled row as a 0 byte (PNG filter "none")
 * followed by one index byte per sampled pixel. Returns the number of colours, -1
 * if there are more than 256 (the outputs are then partial), -2 on bad arguments.
 * `mask` must clear at least one bit (0x00FFFFFF for RGBX in little-endian order).
 */
int gpal_index(const uint32_t *pixels, int w, int h, ptrdiff_t stride, int step,
               uint32_t mask, uint32_t *palette, uint8_t *rows) {
    uint32_t keys[SLOTS];
    uint8_t values[SLOTS];
    int count = 0;
    int x, y, i;

    if (pixels == NULL || palette == NULL || w <= 0 || h <= 0 || step <= 0 ||
        stride < (ptrdiff_t)w || mask == EMPTY)
        return -2;
    for (i = 0; i < SLOTS; i++) keys[i] = EMPTY;

    for (y = 0; y < h; y += step) {
        const uint32_t *row = pixels + (ptrdiff_t)y * stride;
        uint32_t last = EMPTY;
        uint8_t last_index = 0;
        if (rows != NULL) *rows++ = 0;
        for (x = 0; x < w; x += step) {
            uint32_t c = row[x] & mask;
            if (c != last) {
                uint32_t slot = (c * 0x9E3779B1u) >> 22; /* 10 bits: SLOTS */
                while (keys[slot] != c && keys[slot] != EMPTY) slot = (slot + 1) & (SLOTS - 1);
                if (keys[slot] == EMPTY) {
                    if (count == MAX_COLOURS) return -1;
                    keys[slot] = c;
                    values[slot] = (uint8_t)count;
                    palette[count++] = c;
                }
                last = c;
                last_index = values[slot];
            }
            if (rows != NULL) *rows++ = last_index;
        }
    }
    return count;
}
