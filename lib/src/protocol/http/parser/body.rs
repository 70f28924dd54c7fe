//! Where a message body ends: chunked (RFC 9112 §7.1) or delimited by Content-Length.
//!
//! The proxy forwards bodies as they are, so these trackers only validate the framing
//! and find the end. They are fed successive slices of body bytes, split anywhere, and
//! never copy them.

use super::{Limits, is_tchar, is_text_byte};

/// Longest chunk-size line, extensions and CRLF included (as Go's net/http).
pub const MAX_CHUNK_LINE: usize = 4096;

/// How far a body got with the bytes just fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyProgress {
    /// Every byte fed belongs to the body, which goes on.
    Partial,
    /// The body ends after the first `len` bytes fed in this call; what follows belongs
    /// to the next message.
    Complete {
        /// Bytes of this call's input that belong to the body, from its start.
        len: usize,
    },
}

/// A chunked body that breaks the framing. The message cannot be delimited: close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The chunk size is not hexadecimal.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// The chunk size has more than 16 hex digits, so it does not fit in 64 bits.
    #[error("chunk size of more than 16 hex digits")]
    ChunkSizeTooLong,
    /// A chunk extension that is not `;name[=value]` with a token name.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// The chunk size line is longer than [`MAX_CHUNK_LINE`].
    #[error("chunk size line longer than the limit")]
    ChunkLineTooLong,
    /// A chunk line or chunk data not followed by CRLF.
    #[error("line not ending with CRLF")]
    InvalidLineEnd,
    /// A trailer field line that is not a valid field line.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section is larger than [`Limits::max_header_section`].
    #[error("trailer section larger than the limit")]
    TrailerSectionTooLarge,
    /// More trailer fields than [`Limits::max_headers`].
    #[error("more trailer fields than the limit")]
    TooManyTrailers,
}

/// Tracks a chunked body, byte by byte through sizes, extensions and trailers, and in
/// one step over chunk data.
///
/// Invariant: `size` is the value of the hex digits read on the current size line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedBody {
    stage: Stage,
    size: u64,
    /// Bytes of the current size line.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
    trailers: usize,
    max_trailer_section: usize,
    max_trailers: usize,
}

/// Where in `chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF` or in the trailer
/// section the next byte falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Hex digits of a chunk size, `digits` of them so far.
    SizeDigits {
        digits: u8,
    },
    /// Whitespace after a size or an extension, which must lead to `;` (`BWS ";"`).
    ExtensionSpace,
    /// After `;`: whitespace, then an extension name.
    ExtensionNameStart,
    ExtensionName,
    /// Whitespace after an extension name, which must lead to `=` or `;`.
    ExtensionNameSpace,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtensionValueStart,
    ExtensionToken,
    ExtensionQuoted,
    /// After a backslash in a quoted string.
    ExtensionQuotedPair,
    /// After the closing quote of a quoted string.
    ExtensionValueEnd,
    /// After the CR of a size line.
    SizeLf,
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// After the CR of the empty line that ends the body.
    FinalLf,
    Done,
}

impl Stage {
    fn is_size_line(self) -> bool {
        matches!(
            self,
            Self::SizeDigits { .. }
                | Self::ExtensionSpace
                | Self::ExtensionNameStart
                | Self::ExtensionName
                | Self::ExtensionNameSpace
                | Self::ExtensionValueStart
                | Self::ExtensionToken
                | Self::ExtensionQuoted
                | Self::ExtensionQuotedPair
                | Self::ExtensionValueEnd
                | Self::SizeLf
        )
    }

    fn is_trailer(self) -> bool {
        matches!(
            self,
            Self::TrailerLineStart
                | Self::TrailerName
                | Self::TrailerValue
                | Self::TrailerLf
                | Self::FinalLf
        )
    }
}

impl ChunkedBody {
    /// A body about to start. Trailers are bounded like a header section by `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            stage: Stage::SizeDigits { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_len: 0,
            trailers: 0,
            max_trailer_section: limits.max_header_section,
            max_trailers: limits.max_headers,
        }
    }

    /// Whether the last chunk and the trailer section were read: the body has ended.
    pub fn is_complete(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Takes the next bytes of the body. After an error the body cannot be delimited and
    /// the tracker must not be fed again.
    pub fn feed(&mut self, input: &[u8]) -> Result<BodyProgress, ChunkedError> {
        self.feed_with(input, |_| {})
    }

    /// Like [`ChunkedBody::feed`], and shows `on_data` each run of chunk data in the bytes fed,
    /// in order: what is left once the chunked coding is removed (RFC 9112 §7.1.3).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(&[u8]),
    ) -> Result<BodyProgress, ChunkedError> {
        self.feed_with_trailers(input, on_data, |_| {})
    }

    /// Like [`ChunkedBody::feed_with`], and shows `on_trailer` each byte of the trailer
    /// section, in order: its field lines, each ended by CRLF, then the CRLF that ends the
    /// body. The bytes are only shown once checked, so they are well-formed field lines.
    pub fn feed_with_trailers(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
        mut on_trailer: impl FnMut(u8),
    ) -> Result<BodyProgress, ChunkedError> {
        let mut pos = 0;
        loop {
            match self.stage {
                Stage::Done => return Ok(BodyProgress::Complete { len: pos }),
                Stage::Data { remaining } => {
                    let available = input.len().saturating_sub(pos);
                    if available == 0 {
                        return Ok(BodyProgress::Partial);
                    }
                    let len = usize::try_from(remaining)
                        .map_or(available, |remaining| remaining.min(available));
                    on_data(input.get(pos..pos + len).unwrap_or_default());
                    pos += len;
                    let remaining =
                        remaining.saturating_sub(u64::try_from(len).unwrap_or(u64::MAX));
                    self.stage = if remaining == 0 {
                        Stage::DataCr
                    } else {
                        Stage::Data { remaining }
                    };
                }
                stage => {
                    let Some(&byte) = input.get(pos) else {
                        return Ok(BodyProgress::Partial);
                    };
                    self.count(stage)?;
                    self.stage = self.next(stage, byte)?;
                    if stage.is_trailer() {
                        on_trailer(byte);
                    }
                    pos += 1;
                }
            }
        }
    }

    /// Counts one byte of a size line or of the trailer section against its bound.
    fn count(&mut self, stage: Stage) -> Result<(), ChunkedError> {
        if stage.is_size_line() {
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE {
                return Err(ChunkedError::ChunkLineTooLong);
            }
        } else if stage.is_trailer() {
            self.trailer_len += 1;
            if self.trailer_len > self.max_trailer_section {
                return Err(ChunkedError::TrailerSectionTooLarge);
            }
        }
        Ok(())
    }

    /// The stage after `byte`, read in `stage`.
    fn next(&mut self, stage: Stage, byte: u8) -> Result<Stage, ChunkedError> {
        let is_space = matches!(byte, b' ' | b'\t');
        Ok(match stage {
            Stage::SizeDigits { digits } => match char::from(byte).to_digit(16) {
                Some(_) if digits >= 16 => return Err(ChunkedError::ChunkSizeTooLong),
                Some(digit) => {
                    // Cannot overflow: at most 16 hex digits.
                    self.size = self.size << 4 | u64::from(digit);
                    Stage::SizeDigits { digits: digits + 1 }
                }
                None if digits == 0 => return Err(ChunkedError::InvalidChunkSize),
                None if byte == b';' => Stage::ExtensionNameStart,
                None if is_space => Stage::ExtensionSpace,
                None if byte == b'\r' => Stage::SizeLf,
                None => return Err(ChunkedError::InvalidChunkSize),
            },
            Stage::ExtensionSpace => match byte {
                _ if is_space => Stage::ExtensionSpace,
                b';' => Stage::ExtensionNameStart,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionNameStart => match byte {
                _ if is_space => Stage::ExtensionNameStart,
                _ if is_tchar(byte) => Stage::ExtensionName,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionName => match byte {
                _ if is_tchar(byte) => Stage::ExtensionName,
                _ if is_space => Stage::ExtensionNameSpace,
                b'=' => Stage::ExtensionValueStart,
                b';' => Stage::ExtensionNameStart,
                b'\r' => Stage::SizeLf,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionNameSpace => match byte {
                _ if is_space => Stage::ExtensionNameSpace,
                b'=' => Stage::ExtensionValueStart,
                b';' => Stage::ExtensionNameStart,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionValueStart => match byte {
                _ if is_space => Stage::ExtensionValueStart,
                b'"' => Stage::ExtensionQuoted,
                _ if is_tchar(byte) => Stage::ExtensionToken,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionToken if is_tchar(byte) => Stage::ExtensionToken,
            Stage::ExtensionToken | Stage::ExtensionValueEnd => match byte {
                _ if is_space => Stage::ExtensionSpace,
                b';' => Stage::ExtensionNameStart,
                b'\r' => Stage::SizeLf,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionQuoted => match byte {
                b'"' => Stage::ExtensionValueEnd,
                b'\\' => Stage::ExtensionQuotedPair,
                _ if is_text_byte(byte) => Stage::ExtensionQuoted,
                _ => return Err(ChunkedError::InvalidExtension),
            },
            Stage::ExtensionQuotedPair if is_text_byte(byte) => Stage::ExtensionQuoted,
            Stage::ExtensionQuotedPair => return Err(ChunkedError::InvalidExtension),
            Stage::SizeLf if byte != b'\n' => return Err(ChunkedError::InvalidLineEnd),
            Stage::SizeLf => {
                let size = std::mem::take(&mut self.size);
                self.line_len = 0;
                if size == 0 {
                    Stage::TrailerLineStart
                } else {
                    Stage::Data { remaining: size }
                }
            }
            Stage::Data { remaining } => match remaining.saturating_sub(1) {
                0 => Stage::DataCr,
                remaining => Stage::Data { remaining },
            },
            Stage::DataCr if byte == b'\r' => Stage::DataLf,
            Stage::DataLf if byte == b'\n' => Stage::SizeDigits { digits: 0 },
            Stage::DataCr | Stage::DataLf => return Err(ChunkedError::InvalidLineEnd),
            Stage::TrailerLineStart => match byte {
                b'\r' => Stage::FinalLf,
                _ if is_tchar(byte) => {
                    self.trailers += 1;
                    if self.trailers > self.max_trailers {
                        return Err(ChunkedError::TooManyTrailers);
                    }
                    Stage::TrailerName
                }
                // Empty names, obs-fold and bare LFs.
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            Stage::TrailerName => match byte {
                _ if is_tchar(byte) => Stage::TrailerName,
                b':' => Stage::TrailerValue,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            Stage::TrailerValue => match byte {
                _ if is_text_byte(byte) => Stage::TrailerValue,
                b'\r' => Stage::TrailerLf,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            Stage::TrailerLf if byte == b'\n' => Stage::TrailerLineStart,
            Stage::FinalLf if byte == b'\n' => Stage::Done,
            Stage::TrailerLf | Stage::FinalLf => return Err(ChunkedError::InvalidLineEnd),
            Stage::Done => Stage::Done,
        })
    }
}

/// Tracks a body of known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentLengthBody {
    remaining: u64,
}

impl ContentLengthBody {
    /// A body of `length` bytes (the Content-Length value).
    pub fn new(length: u64) -> Self {
        Self { remaining: length }
    }

    /// Bytes of the body not yet fed.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Takes the next bytes of the body.
    pub fn feed(&mut self, input: &[u8]) -> BodyProgress {
        let available = u64::try_from(input.len()).unwrap_or(u64::MAX);
        if available < self.remaining {
            self.remaining -= available;
            return BodyProgress::Partial;
        }
        // `remaining <= input.len()` here, so it fits in a usize.
        let len = usize::try_from(self.remaining).unwrap_or(input.len());
        self.remaining = 0;
        BodyProgress::Complete { len }
    }
}
