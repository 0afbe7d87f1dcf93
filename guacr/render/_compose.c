/*
 * guacr glyph compositor: the palette image of a rectangle of terminal cells, from
 * per-cell glyph coverage tiles and colour pairs, in two passes over the pixels.
 *
 * Why C: a terminal frame's images are composed in an encoder thread. In numpy a
 * full screen (1020x760) took 5-9 ms of CPU in six full-size passes (gather the tiles,
 * repeat the pairs, combine, count, look up, copy), and numpy holds the GIL for much
 * of that: the worker's event loop waited ~4 ms per compose for it, more on a busy
 * machine, where a thread holding the GIL can be preempted and leave every session of
 * the worker waiting (issue 16). Here the work is ~0.8 ms and ctypes releases the GIL
 * for the call. Measured figures are in guacr/render/compose.py.
 *
 * Palette entries are the (pair, coverage) combinations that occur, in ascending
 * order of pair * 256 + coverage: the same image and palette as the numpy version.
 *
 * Called through ctypes (no Python headers); ctypes releases the GIL for the call.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GCMP_ABI 1
#define MAX_COLOURS 256

int gcmp_abi(void) { return GCMP_ABI; }

/*
 * tiles: ntiles coverage tiles of ch x cw bytes each, contiguous.
 * tid, pid: rows x cols cell tile indices and colour-pair indices (< npairs).
 * lut: npairs * 256 ints of scratch space.
 * used: up to 256 ints: the occurring pair * 256 + coverage values, ascending.
 * out: (rows * ch) x (cols * cw) palette indices, rows contiguous.
 * Returns the number of palette entries, -1 above 256 (outputs are then partial),
 * -2 on bad arguments (nothing is read out of bounds).
 */
int gcmp_compose(const uint8_t *tiles, int ntiles, int ch, int cw, const int32_t *tid,
                 const int32_t *pid, int rows, int cols, int npairs, int32_t *lut,
                 int32_t *used, uint8_t *out)
{
    if (!tiles || !tid || !pid || !lut || !used || !out || ntiles <= 0 || ch <= 0 ||
        cw <= 0 || rows <= 0 || cols <= 0 || npairs <= 0)
        return -2;
    const size_t cells = (size_t)rows * cols, area = (size_t)ch * cw;
    const size_t combos = (size_t)npairs * 256;
    for (size_t i = 0; i < cells; i++)
        if (tid[i] < 0 || tid[i] >= ntiles || pid[i] < 0 || pid[i] >= npairs)
            return -2;

    /* Pass 1: which (pair, coverage) combinations occur. */
    memset(lut, 0, combos * sizeof *lut);
    for (size_t i = 0; i < cells; i++) {
        const uint8_t *tile = tiles + (size_t)tid[i] * area;
        int32_t *mark = lut + (size_t)pid[i] * 256;
        for (size_t k = 0; k < area; k++)
            mark[tile[k]] = 1;
    }
    int n = 0;
    for (size_t v = 0; v < combos; v++) {
        if (!lut[v])
            continue;
        if (n == MAX_COLOURS)
            return -1;
        used[n] = (int32_t)v;
        lut[v] = n++;
    }

    /* Pass 2: the index of every pixel, cell by cell. */
    const size_t width = (size_t)cols * cw;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            const size_t i = (size_t)r * cols + c;
            const uint8_t *tile = tiles + (size_t)tid[i] * area;
            const int32_t *index = lut + (size_t)pid[i] * 256;
            uint8_t *dst = out + (size_t)r * ch * width + (size_t)c * cw;
            for (int y = 0; y < ch; y++, dst += width, tile += cw)
                for (int x = 0; x < cw; x++)
                    dst[x] = (uint8_t)index[tile[x]];
        }
    }
    return n;
}
