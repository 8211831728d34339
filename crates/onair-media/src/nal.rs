//! H.264 NAL unit framing: Annex-B byte streams (start codes, what RTP depacketisers and
//! encoders emit) versus AVCC (length prefixes, what FLV/RTMP/MP4 carry), and building
//! an `AVCDecoderConfigurationRecord` from in-band SPS/PPS.
//!
//! These are the generic halves of bridging WebRTC to the FLV-based stream registry:
//! WebRTC delivers access units as Annex-B with SPS/PPS in band; FLV wants them out of
//! band in a sequence header and the pictures length-prefixed. Pure functions over
//! untrusted bytes: no panics, errors are values (proptest below, fuzzed in
//! `fuzz/fuzz_targets/nal.rs`).

use h264_reader::nal::sps::{ChromaFormat, SeqParameterSet};
use h264_reader::nal::{Nal, RefNal};

use crate::codec::CodecError;

/// NAL unit type of a non-IDR coded slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of an IDR coded slice (a keyframe).
pub const NAL_IDR: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The 4-byte Annex-B start code written in front of every NAL unit by [`nals_to_annexb`].
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The type of a NAL unit (low 5 bits of its header byte); `None` for an empty unit.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Why a length-prefixed (AVCC) sample could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NalError {
    /// The length-prefix size is not 1, 2 or 4 bytes.
    #[error("NAL length size {0} is not 1, 2 or 4")]
    LengthSize(u8),
    /// A length prefix, or the unit it announces, runs past the end of the sample.
    #[error("AVCC sample truncated at byte {0}")]
    Truncated(usize),
}

/// Splits an Annex-B byte stream into its NAL units (start codes removed).
///
/// Accepts 3- and 4-byte start codes; bytes before the first start code are ignored and
/// trailing zero bytes of a unit are dropped (they are `trailing_zero_8bits` or the first
/// byte of a 4-byte start code: a NAL unit never ends in `0x00`). Empty units are skipped.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                push_trimmed(&mut out, &data[s..i]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push_trimmed(&mut out, &data[s..]);
    }
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a [u8]>, nal: &'a [u8]) {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if end > 0 {
        out.push(&nal[..end]);
    }
}

/// Splits an AVCC sample (each unit behind a big-endian length of `length_size` bytes).
pub fn split_avcc(data: &[u8], length_size: u8) -> Result<Vec<&[u8]>, NalError> {
    let n = usize::from(length_size);
    if !matches!(n, 1 | 2 | 4) {
        return Err(NalError::LengthSize(length_size));
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let prefix = data.get(pos..pos + n).ok_or(NalError::Truncated(pos))?;
        let len = prefix.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let body = data.get(pos + n..pos + n + len).ok_or(NalError::Truncated(pos))?;
        if !body.is_empty() {
            out.push(body);
        }
        pos += n + len;
    }
    Ok(out)
}

/// Writes NAL units as an AVCC sample with 4-byte length prefixes.
pub fn nals_to_avcc<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        // A NAL unit larger than 4 GiB cannot come from a bounded input.
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// Writes NAL units as an Annex-B byte stream with 4-byte start codes.
pub fn nals_to_annexb<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    out
}

/// Builds an `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1) holding one SPS
/// and one PPS (NAL header bytes included), with 4-byte NAL lengths — the FLV sequence
/// header for a stream whose parameter sets arrived in band.
///
/// Profile, compatibility and level are copied from the SPS; for the high profiles the
/// extension (chroma format, bit depths) is read from the SPS, as ffmpeg writes it.
pub fn avcc_record(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, CodecError> {
    if sps.len() < 4 || nal_type(sps) != Some(NAL_SPS) {
        return Err(CodecError::Sps("not an SPS NAL unit".into()));
    }
    if pps.is_empty() || nal_type(pps) != Some(NAL_PPS) {
        return Err(CodecError::NoPps);
    }
    let (sps_len, pps_len) = match (u16::try_from(sps.len()), u16::try_from(pps.len())) {
        (Ok(s), Ok(p)) => (s, p),
        _ => return Err(CodecError::Sps("parameter set longer than 65535 bytes".into())),
    };
    let parsed = SeqParameterSet::from_bits(RefNal::new(sps, &[], true).rbsp_bits())
        .map_err(|e| CodecError::Sps(format!("{e:?}")))?;
    let profile = sps[1];
    let mut out = Vec::with_capacity(16 + sps.len() + pps.len());
    out.extend_from_slice(&[1, profile, sps[2], sps[3], 0xff, 0xe1]);
    out.extend_from_slice(&sps_len.to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&pps_len.to_be_bytes());
    out.extend_from_slice(pps);
    if matches!(profile, 100 | 110 | 122 | 144) {
        let chroma = match parsed.chroma_info.chroma_format {
            ChromaFormat::Monochrome => 0,
            ChromaFormat::YUV420 => 1,
            ChromaFormat::YUV422 => 2,
            ChromaFormat::YUV444 => 3,
            ChromaFormat::Invalid(_) => return Err(CodecError::Sps("invalid chroma format".into())),
        };
        out.push(0xfc | chroma);
        out.push(0xf8 | (parsed.chroma_info.bit_depth_luma_minus8 & 0x07));
        out.push(0xf8 | (parsed.chroma_info.bit_depth_chroma_minus8 & 0x07));
        out.push(0); // no SPS extensions
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::parse_avcc;
    use crate::codec::tests::AVCC_640X360;

    #[test]
    fn annexb_table() {
        type Row = (&'static [u8], &'static [&'static [u8]]);
        let table: &[Row] = &[
            (&[], &[]),
            (&[0, 0, 1], &[]),
            (&[0, 0, 0, 1, 0x67, 1, 2], &[&[0x67, 1, 2]]),
            (&[0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2], &[&[0x67, 1], &[0x68, 2]]),
            // 4-byte start code after a unit: its leading zero is not part of the unit.
            (&[0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65, 9, 0, 0], &[&[0x67, 1], &[0x65, 9]]),
            // Garbage before the first start code is ignored; 00 00 03 stays (emulation prevention).
            (&[7, 7, 0, 0, 1, 0x41, 0, 0, 3, 1], &[&[0x41, 0, 0, 3, 1]]),
            // Empty units between start codes are skipped.
            (&[0, 0, 1, 0, 0, 1, 0x09, 0xf0], &[&[0x09, 0xf0]]),
            (&[1, 2, 3], &[]),
        ];
        for (input, want) in table {
            assert_eq!(split_annexb(input), want.to_vec(), "input {input:02x?}");
        }
    }

    #[test]
    fn avcc_table() {
        type Row = (&'static [u8], u8, Result<&'static [&'static [u8]], NalError>);
        let table: &[Row] = &[
            (&[], 4, Ok(&[])),
            (&[0, 0, 0, 2, 0x65, 1], 4, Ok(&[&[0x65, 1]])),
            (&[0, 1, 0x09, 0, 2, 0x65, 1], 2, Ok(&[&[0x09], &[0x65, 1]])),
            (&[1, 0x09, 0], 1, Ok(&[&[0x09]])),
            (&[0, 0, 0, 3, 0x65, 1], 4, Err(NalError::Truncated(0))),
            (&[0, 0, 0, 1, 0x65, 0, 0], 4, Err(NalError::Truncated(5))),
            (&[0, 1, 2], 3, Err(NalError::LengthSize(3))),
        ];
        for (input, size, want) in table {
            let got = split_avcc(input, *size);
            assert_eq!(got, want.clone().map(|v| v.to_vec()), "input {input:02x?}");
        }
    }

    #[test]
    fn round_trips() {
        let nals: Vec<&[u8]> = vec![&[0x09, 0xf0], &[0x67, 0x42, 0, 0x1e], &[0x65, 0x88, 0, 0, 3, 1]];
        assert_eq!(split_annexb(&nals_to_annexb(nals.iter().copied())), nals);
        assert_eq!(split_avcc(&nals_to_avcc(nals.iter().copied()), 4).unwrap(), nals);
    }

    #[test]
    fn record_from_parameter_sets_matches_libx264() {
        // Take ffmpeg's record apart and build it again from its SPS and PPS.
        let parsed = parse_avcc(AVCC_640X360).unwrap();
        let built = avcc_record(&parsed.sps[0], &parsed.pps[0]).unwrap();
        assert_eq!(built, AVCC_640X360);
        // A baseline SPS gets no high-profile extension.
        let sps = [
            0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0, 0, 3, 0, 0x10, 0, 0, 3, 3, 0xc0, 0xf1, 0x42,
            0xa4, 0x80,
        ];
        let rec = avcc_record(&sps, &[0x68, 0xce, 0x3c, 0x80]).unwrap();
        let back = parse_avcc(&rec).unwrap();
        assert_eq!((back.width, back.height, back.profile, back.ext), (320, 240, 66, None));
    }

    #[test]
    fn record_errors() {
        assert!(matches!(avcc_record(&[0x68, 1, 2, 3], &[0x68, 1]), Err(CodecError::Sps(_))));
        assert_eq!(avcc_record(&[0x67, 0x42, 0, 0x1e, 0xff], &[]), Err(CodecError::NoPps));
        assert!(avcc_record(&[0x67, 0x42, 0, 0x1e, 0xff], &[0x68, 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn splitters_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), size in 0u8..6) {
            let _ = split_annexb(&data);
            let _ = split_avcc(&data, size);
            if data.len() > 4 {
                let _ = avcc_record(&data, &data[1..]);
            }
        }

        #[test]
        fn annexb_round_trip(units in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..40), 0..8)) {
            // Units of nonzero bytes cannot contain a start code, so splitting restores them.
            let refs: Vec<&[u8]> = units.iter().map(|u| u.as_slice()).collect();
            let annexb = nals_to_annexb(refs.iter().copied());
            proptest::prop_assert_eq!(split_annexb(&annexb), refs.clone());
            let avcc = nals_to_avcc(refs.iter().copied());
            proptest::prop_assert_eq!(split_avcc(&avcc, 4).unwrap(), refs);
        }
    }
}
