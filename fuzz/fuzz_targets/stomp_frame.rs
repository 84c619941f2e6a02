//! Fuzz target: arbitrary bytes from a STOMP peer through the frame decoder.
//!
//! Whatever the bytes, and however reads split them, decoding must return frames, heart-beats
//! or an error, never panic, never hold more than the frame limit, and give the same items
//! whether the input arrives whole or in two pieces. Every decoded frame that can be encoded
//! must decode again to itself (plus the `content-length` the encoder adds).

#![no_main]

use baton::broker::stomp::frame::{Decoder, FrameError, Item};
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
        let Ok(bytes) = frame.to_bytes() else { continue };
        let (again, error) = decode(&[&bytes]);
        assert!(error.is_none(), "a re-encoded frame fails to decode: {error:?}");
        let Some(Item::Frame(decoded)) = again.into_iter().next() else {
            panic!("a re-encoded frame decodes to nothing");
        };
        assert_eq!(decoded.command, frame.command);
        assert_eq!(decoded.body, frame.body);
    }
});
