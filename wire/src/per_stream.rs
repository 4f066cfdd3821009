use core::ops::{Index, IndexMut};

use crate::frame::{STREAM_COUNT, Stream};

/// One `T` per stream, indexed by [`Stream`] (no bare `[T; 6]` with `stream as usize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerStream<T>([T; STREAM_COUNT]);

impl<T: Copy> PerStream<T> {
    /// `v` for every stream.
    pub const fn splat(v: T) -> Self {
        PerStream([v; STREAM_COUNT])
    }
}

impl<T> PerStream<T> {
    /// Each stream's value from `f`.
    pub fn from_fn(mut f: impl FnMut(Stream) -> T) -> Self {
        PerStream(core::array::from_fn(|i| f(Stream::ALL[i])))
    }

    /// Every stream with its value, in stream-id order.
    pub fn iter(&self) -> impl Iterator<Item = (Stream, &T)> {
        Stream::ALL.into_iter().zip(self.0.iter())
    }

    /// Every stream with its value, mutably, in stream-id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Stream, &mut T)> {
        Stream::ALL.into_iter().zip(self.0.iter_mut())
    }
}

impl<T> Index<Stream> for PerStream<T> {
    type Output = T;
    fn index(&self, s: Stream) -> &T {
        &self.0[s.index()]
    }
}

impl<T> IndexMut<Stream> for PerStream<T> {
    fn index_mut(&mut self, s: Stream) -> &mut T {
        &mut self.0[s.index()]
    }
}
