//! The tile runs that debug builds give frames of their own (see `crate::frame`): a tile
//! of `R` rows over one K block, alone or paired, and a single row's pairs of sub-panels.

use pulp::Simd;

use super::{MatMut, RowWalk, Tile};
use crate::float::Float;
use crate::frame::FramedCall;

/// [`Tile::run`]'s arguments, for [`framed`](crate::frame::framed): a tile of `R` rows over one K block.
pub(super) struct TileAlone<'t, 'c, 'm, S: Simd, T: Float, const R: usize, const NV: usize> {
    pub(super) tile: Tile<'t, S, T>,
    pub(super) beta: T,
    pub(super) c: &'c mut MatMut<'m, T>,
}

impl<S: Simd, T: Float, const R: usize, const NV: usize> FramedCall<S>
    for TileAlone<'_, '_, '_, S, T, R, NV>
{
    type Output = usize;
    #[inline(always)]
    fn call(self, s: S) -> usize {
        let TileAlone { tile, beta, c } = self;
        tile.run_unframed::<R, NV>(s, beta, c)
    }
}

/// [`Tile::run_pair_rows`]'s arguments, for [`framed`](crate::frame::framed): two tiles of `R` rows (the same rows,
/// two sub-panels) over one K block.
pub(super) struct TilePair<'t, 'c, 'm, S: Simd, T: Float, const R: usize, const NV: usize> {
    pub(super) tile: Tile<'t, S, T>,
    pub(super) other: Tile<'t, S, T>,
    pub(super) beta: T,
    pub(super) c: &'c mut MatMut<'m, T>,
}

impl<S: Simd, T: Float, const R: usize, const NV: usize> FramedCall<S>
    for TilePair<'_, '_, '_, S, T, R, NV>
{
    type Output = usize;
    #[inline(always)]
    fn call(self, s: S) -> usize {
        let TilePair {
            tile,
            other,
            beta,
            c,
        } = self;
        tile.run_pair_rows_unframed::<R, NV>(other, s, beta, c)
    }
}

/// [`Tile::run_pairs`]'s arguments, for [`framed`](crate::frame::framed).
pub(super) struct RowPairs<'t, 'c, 'm, S: Simd, T: Float, const NV: usize> {
    pub(super) tile: Tile<'t, S, T>,
    pub(super) other: Tile<'t, S, T>,
    pub(super) pairs: RowWalk,
    pub(super) kc: usize,
    pub(super) beta: T,
    pub(super) c: &'c mut MatMut<'m, T>,
}

impl<S: Simd, T: Float, const NV: usize> FramedCall<S> for RowPairs<'_, '_, '_, S, T, NV> {
    type Output = ();
    #[inline(always)]
    fn call(self, s: S) {
        let RowPairs {
            tile,
            other,
            pairs,
            kc,
            beta,
            c,
        } = self;
        tile.run_pairs_unframed::<NV>(other, s, pairs, kc, beta, c);
    }
}
