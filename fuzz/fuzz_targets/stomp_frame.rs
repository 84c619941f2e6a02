//! Fuzz target: arbitrary bytes from a STOMP peer through the frame decoder.
//!
//! Whatever the bytes, and however reads split them, decoding must return frames, heart-beats
//! or an error, never panic, never hold more than the frame limit, and give the same items
//! whether the input arrives whole or in two pieces. Every decoded frame the encoder accepts
//! must decode again to itself (with the `content-length` the encoder writes for a body).

#![no_main]

use baton::broker::stomp::frame::{Decoder, EncodeError, Frame, FrameError, Item};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fn decode(pieces: &[&[u8]]) -> (Vec<Item>, Option<FrameError>) {
    let mut decoder = Decoder::new(LIMIT);
    let mut buffer = Vec::new();
    let mut items = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(error) => return (items, Some(error)),
            }
        }
        assert!(
            buffer.len() <= LIMIT + piece.len(),
            "the decoder holds {} bytes, over the limit",
            buffer.len()
        );
    }
    (items, None)
}

fuzz_target!(|data: &[u8]| {
    let (whole, whole_error) = decode(&[data]);
    let split = data.len() / 2;
    let (halves, halves_error) = decode(&[&data[..split], &data[split..]]);
    assert_eq!(whole, halves, "items depend on how reads split the input");
    assert_eq!(whole_error.is_some(), halves_error.is_some(), "errors depend on how reads split the input");
    for item in whole {
        let Item::Frame(frame) = item else { continue };
        round_trip(&frame);
    }
});

/// What the encoder writes, the decoder reads back: the same frame, with the `content-length`
/// the encoder puts on a body (and only there). The encoder may refuse a frame, but only for
/// one of its documented reasons.
fn round_trip(frame: &Frame) {
    let bytes = match frame.to_bytes() {
        Ok(bytes) => bytes,
        Err(
            EncodeError::Unescapable { .. }
            | EncodeError::TooManyHeaders { .. }
            | EncodeError::HeadTooLarge { .. },
        ) => {
            return;
        }
    };
    let mut decoder = Decoder::new(bytes.len());
    let mut buffer = bytes;
    let decoded = decoder.decode(&mut buffer);
    let mut expected = frame.clone();
    expected.headers.retain(|(name, _)| name != "content-length");
    if !expected.body.is_empty() {
        expected.headers.push(("content-length".to_string(), expected.body.len().to_string()));
    }
    assert_eq!(decoded, Ok(Some(Item::Frame(expected))), "a re-encoded frame decodes to something else");
    assert!(
        buffer.is_empty() || decoder.decode(&mut buffer) == Ok(None),
        "a re-encoded frame left bytes behind"
    );
}
