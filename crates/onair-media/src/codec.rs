//! Codec configuration parsing: what a muxer and a player need to know about a stream.
//!
//! - H.264: the `AVCDecoderConfigurationRecord` (avcC, ISO/IEC 14496-15 §5.3.3.1) is split
//!   into its SPS/PPS lists here; the SPS itself is decoded by the `h264-reader` crate
//!   (exp-Golomb fields, cropping, VUI) for width, height and the RFC 6381 codec string.
//! - AAC: the `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) is a handful of bit fields,
//!   parsed in-house (the research notes: "~50 lines — write in-house").
//!
//! Every parser takes untrusted bytes from a publisher: bounds are checked everywhere and
//! errors are values, never panics (fuzzed in `fuzz/fuzz_targets/codec_config.rs`).

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};

use crate::frame::CodecConfig;

/// Why a codec configuration could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("avcC record truncated")]
    AvccTruncated,
    #[error("avcC configuration version {0} is not 1")]
    AvccVersion(u8),
    #[error("avcC record carries no SPS")]
    NoSps,
    #[error("avcC record carries no PPS")]
    NoPps,
    #[error("H.264 SPS invalid: {0}")]
    Sps(String),
    #[error("AudioSpecificConfig truncated")]
    AscTruncated,
    #[error("AudioSpecificConfig: unsupported sampling frequency index {0}")]
    AscFrequency(u8),
    #[error("AudioSpecificConfig: channel configuration 0 (program config element) is not supported")]
    AscChannels,
}

/// A parsed `AVCDecoderConfigurationRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (66 baseline, 77 main, 100 high, …).
    pub profile: u8,
    /// `profile_compatibility` (the constraint-set flags byte).
    pub compatibility: u8,
    /// `AVCLevelIndication` (31 = level 3.1).
    pub level: u8,
    /// Size in bytes of the NAL length prefix in samples (1, 2 or 4).
    pub length_size: u8,
    /// Sequence parameter sets, NAL header byte included.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, NAL header byte included.
    pub pps: Vec<Vec<u8>>,
    /// The high-profile extension (chroma format, bit depths), when present.
    pub ext: Option<AvcExt>,
    /// Display width in pixels (after cropping), from the first SPS.
    pub width: u32,
    /// Display height in pixels (after cropping), from the first SPS.
    pub height: u32,
}

/// The optional tail of an avcC record for the high profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcExt {
    pub chroma_format: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub sps_ext: Vec<Vec<u8>>,
}

impl AvcConfig {
    /// RFC 6381 codec string, e.g. `avc1.64001f` (profile, compatibility, level in hex) — what
    /// the HLS `CODECS` attribute and the browser's `MediaSource.addSourceBuffer` expect.
    pub fn codec_string(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile, self.compatibility, self.level)
    }
}

/// Reads a 16-bit-length-prefixed list of `count` parameter sets.
fn param_sets(buf: &[u8], pos: &mut usize, count: usize) -> Result<Vec<Vec<u8>>, CodecError> {
    let mut out = Vec::with_capacity(count.min(32));
    for _ in 0..count {
        let len_bytes = buf.get(*pos..*pos + 2).ok_or(CodecError::AvccTruncated)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        *pos += 2;
        let set = buf.get(*pos..*pos + len).ok_or(CodecError::AvccTruncated)?;
        *pos += len;
        out.push(set.to_vec());
    }
    Ok(out)
}

/// The H.264 profiles most browsers cannot decode (10-bit, 4:2:2, 4:4:4: GStreamer's
/// x264enc picks 4:4:4 from RGB input unless told otherwise), by the profile byte of an
/// `AVCDecoderConfigurationRecord`; `None` for everything else.
pub fn browser_unplayable_profile(record: &[u8]) -> Option<&'static str> {
    match *record.get(1)? {
        110 => Some("High 10 (10-bit)"),
        122 => Some("High 4:2:2"),
        144 | 244 => Some("High 4:4:4"),
        44 => Some("CAVLC 4:4:4 Intra"),
        _ => None,
    }
}

/// Parses an `AVCDecoderConfigurationRecord` and its first SPS.
pub fn parse_avcc(record: &[u8]) -> Result<AvcConfig, CodecError> {
    let head = record.get(..6).ok_or(CodecError::AvccTruncated)?;
    if head[0] != 1 {
        return Err(CodecError::AvccVersion(head[0]));
    }
    let (profile, compatibility, level) = (head[1], head[2], head[3]);
    let length_size = (head[4] & 0b11) + 1;
    let mut pos = 6;
    let sps = param_sets(record, &mut pos, usize::from(head[5] & 0x1f))?;
    let pps_count = *record.get(pos).ok_or(CodecError::AvccTruncated)?;
    pos += 1;
    let pps = param_sets(record, &mut pos, usize::from(pps_count))?;
    // The extension is only defined for these profiles; encoders (ffmpeg) write it and some
    // (old Flash encoders) leave it out, so it is optional.
    let ext = match (profile, record.get(pos..pos + 4)) {
        (100 | 110 | 122 | 144, Some(e)) => {
            let mut p = pos + 4;
            let sps_ext = param_sets(record, &mut p, usize::from(e[3])).unwrap_or_default();
            Some(AvcExt {
                chroma_format: e[0] & 0b11,
                bit_depth_luma: (e[1] & 0b111) + 8,
                bit_depth_chroma: (e[2] & 0b111) + 8,
                sps_ext,
            })
        }
        _ => None,
    };
    let first = sps.first().ok_or(CodecError::NoSps)?;
    if pps.is_empty() {
        return Err(CodecError::NoPps);
    }
    let info = parse_sps(first)?;
    Ok(AvcConfig { profile, compatibility, level, length_size, width: info.width, height: info.height, sps, pps, ext })
}

/// What the SPS tells: picture size and the profile/level it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub width: u32,
    pub height: u32,
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
}

/// Decodes an H.264 SPS NAL unit (header byte included, emulation prevention still in).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, CodecError> {
    if nal.len() < 4 || nal[0] & 0x1f != 7 {
        return Err(CodecError::Sps("not an SPS NAL unit".into()));
    }
    let nal = RefNal::new(nal, &[], true);
    let sps = SeqParameterSet::from_bits(nal.rbsp_bits()).map_err(|e| CodecError::Sps(format!("{e:?}")))?;
    let (width, height) = sps.pixel_dimensions().map_err(|e| CodecError::Sps(format!("{e:?}")))?;
    Ok(SpsInfo {
        width,
        height,
        profile: u8::from(sps.profile_idc),
        compatibility: u8::from(sps.constraint_flags),
        level: sps.level_idc,
    })
}

/// The sampling frequencies an `AudioSpecificConfig` index stands for.
const AAC_RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// A parsed AAC `AudioSpecificConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    /// Sampling rate of the core decoder in Hz (the fMP4 audio timescale).
    pub sample_rate: u32,
    /// Channel count (channel configuration 7 means 8 channels).
    pub channels: u8,
    /// The record verbatim (goes into the esds box).
    pub raw: Vec<u8>,
}

impl AacConfig {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// PCM samples one AAC access unit decodes to at [`Self::sample_rate`]: 1024 for AAC-LC and
    /// for the core layer of HE-AAC (the SBR layer doubles the output rate, not the count).
    pub fn samples_per_frame(&self) -> u32 {
        1024
    }
}

/// Parses an AAC `AudioSpecificConfig` (only the leading fields a muxer needs).
pub fn parse_asc(asc: &[u8]) -> Result<AacConfig, CodecError> {
    // Bit reader over at most the first 8 bytes; the fields used fit in 5.
    let mut bits: u64 = 0;
    let avail = asc.len().min(8);
    for (i, b) in asc.iter().take(8).enumerate() {
        bits |= u64::from(*b) << (56 - 8 * i);
    }
    let avail_bits = avail * 8;
    let mut used = 0usize;
    let mut take = |n: usize| -> Result<u32, CodecError> {
        if used + n > avail_bits {
            return Err(CodecError::AscTruncated);
        }
        let v = ((bits << used) >> (64 - n)) as u32;
        used += n;
        Ok(v)
    };
    let mut object_type = take(5)? as u8;
    if object_type == 31 {
        object_type = 32 + take(6)? as u8;
    }
    let freq_index = take(4)? as u8;
    let sample_rate = if freq_index == 15 {
        take(24)?
    } else {
        *AAC_RATES.get(usize::from(freq_index)).ok_or(CodecError::AscFrequency(freq_index))?
    };
    if sample_rate == 0 {
        return Err(CodecError::AscFrequency(freq_index));
    }
    let channel_config = take(4)? as u8;
    let channels = match channel_config {
        0 => return Err(CodecError::AscChannels),
        1..=6 => channel_config,
        7 => 8,
        // 8..=15 are reserved or newer layouts; report the configuration as the count
        // only matters for the sample entry, the decoder reads the ASC itself.
        n => n,
    };
    Ok(AacConfig { object_type, sample_rate, channels, raw: asc.to_vec() })
}

/// Video and audio configuration of one stream, as the muxers need them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamConfig {
    pub video: Option<AvcConfig>,
    pub audio: Option<AacConfig>,
}

impl StreamConfig {
    /// Applies one sequence header; a later one replaces the earlier (encoders may resend).
    pub fn apply(&mut self, config: &CodecConfig) -> Result<(), CodecError> {
        match config {
            CodecConfig::Avc { record } => self.video = Some(parse_avcc(record)?),
            CodecConfig::Aac { config } => self.audio = Some(parse_asc(config)?),
        }
        Ok(())
    }

    /// The RFC 6381 `CODECS` value for both tracks, e.g. `avc1.64001f,mp4a.40.2` — what to
    /// pass to `MediaSource.addSourceBuffer('video/mp4; codecs="…"')`.
    pub fn codecs(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.video {
            parts.push(v.codec_string());
        }
        if let Some(a) = &self.audio {
            parts.push(a.codec_string());
        }
        parts.join(",")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// An avcC written by ffmpeg/libx264 for 640x360 high profile level 3.0.
    pub(crate) const AVCC_640X360: &[u8] = &[
        0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9,
        0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96, 0x01, 0x00,
        0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    #[test]
    fn avcc_from_libx264() {
        let c = parse_avcc(AVCC_640X360).unwrap();
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!(c.codec_string(), "avc1.64001e");
        assert_eq!(c.length_size, 4);
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.pps.len(), 1);
        let ext = c.ext.unwrap();
        assert_eq!((ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma), (1, 8, 8));
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn sps_table_from_libx264() {
        // SPS NAL units written by ffmpeg/libx264 for these sizes and profiles (1080p needs
        // the cropping rectangle: 1088 coded lines, 1080 shown).
        let table = [
            ("674d4028eca03c0113f2e022000003000200000300781e30632c", 1920, 1080, 77, 40),
            ("6742c00dd90141fb0110000003001000000303c0f142a480", 320, 240, 66, 13),
            ("6764001facd9405005bb0110000003001000000303c0f1831960", 1280, 720, 100, 31),
        ];
        for (hex, w, h, profile, level) in table {
            let info = parse_sps(&unhex(hex)).unwrap();
            assert_eq!((info.width, info.height, info.profile, info.level), (w, h, profile, level), "{hex}");
        }
    }

    #[test]
    fn avcc_errors() {
        let table: &[(&[u8], CodecError)] = &[
            (&[], CodecError::AvccTruncated),
            (&[1, 0x64, 0, 0x1e, 0xff], CodecError::AvccTruncated),
            (&[0, 0x64, 0, 0x1e, 0xff, 0xe1], CodecError::AvccVersion(0)),
            (&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67], CodecError::AvccTruncated),
            (&[1, 0x64, 0, 0x1e, 0xff, 0xe0, 0x00], CodecError::NoSps),
            (&[1, 0x64, 0, 0x1e, 0xff, 0xe0], CodecError::AvccTruncated),
        ];
        for (input, want) in table {
            assert_eq!(parse_avcc(input).unwrap_err(), *want, "input {input:02x?}");
        }
        // An SPS that is not one.
        let bad = [1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x68, 0x00, 1, 0, 1, 0x68];
        assert!(matches!(parse_avcc(&bad), Err(CodecError::Sps(_))));
    }

    #[test]
    fn asc_table() {
        type Row = (&'static [u8], Result<(u8, u32, u8), CodecError>);
        let table: &[Row] = &[
            (&[0x12, 0x10], Ok((2, 44100, 2))),                   // AAC-LC 44.1 kHz stereo
            (&[0x11, 0x90], Ok((2, 48000, 2))),                   // AAC-LC 48 kHz stereo
            (&[0x11, 0x88], Ok((2, 48000, 1))),                   // mono
            (&[0x13, 0x88], Ok((2, 22050, 1))),                   // 22.05 kHz mono
            (&[0x2b, 0x92, 0x08, 0x00], Ok((5, 22050, 2))),       // HE-AAC (SBR) core 22.05 kHz
            (&[0x17, 0x80, 0x3e, 0x80, 0x10], Ok((2, 32000, 2))), // explicit 24-bit rate
            (&[0x12], Err(CodecError::AscTruncated)),
            (&[], Err(CodecError::AscTruncated)),
            (&[0x16, 0x90], Err(CodecError::AscFrequency(13))),
            (&[0x12, 0x00], Err(CodecError::AscChannels)),
            (&[0x17, 0x80, 0x00, 0x00, 0x10], Err(CodecError::AscFrequency(15))),
        ];
        for (input, want) in table {
            let got = parse_asc(input).map(|c| (c.object_type, c.sample_rate, c.channels));
            assert_eq!(&got, want, "input {input:02x?}");
        }
        assert_eq!(parse_asc(&[0x12, 0x10]).unwrap().codec_string(), "mp4a.40.2");
    }

    #[test]
    fn stream_codecs_string() {
        let mut s = StreamConfig::default();
        s.apply(&CodecConfig::Avc { record: bytes::Bytes::from_static(AVCC_640X360) }).unwrap();
        s.apply(&CodecConfig::Aac { config: bytes::Bytes::from_static(&[0x12, 0x10]) }).unwrap();
        assert_eq!(s.codecs(), "avc1.64001e,mp4a.40.2");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_avcc(&data);
            let _ = parse_asc(&data);
            let _ = parse_sps(&data);
        }

        #[test]
        fn avcc_mutations_never_panic(idx in 0usize..47, val in proptest::prelude::any::<u8>()) {
            let mut d = AVCC_640X360.to_vec();
            d[idx] = val;
            let _ = parse_avcc(&d);
        }
    }

    #[test]
    fn ten_bit_and_4_4_4_profiles_are_named_and_8_bit_ones_pass() {
        let record = |profile: u8| vec![1, profile, 0, 30, 0xff, 0xe1];
        assert_eq!(browser_unplayable_profile(&record(244)), Some("High 4:4:4"));
        assert_eq!(browser_unplayable_profile(&record(110)), Some("High 10 (10-bit)"));
        assert_eq!(browser_unplayable_profile(&record(122)), Some("High 4:2:2"));
        for ok in [66, 77, 100] {
            assert_eq!(browser_unplayable_profile(&record(ok)), None, "{ok}");
        }
        assert_eq!(browser_unplayable_profile(&[1]), None);
    }
}
