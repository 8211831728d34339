//! Fragmented MP4 (CMAF-style) muxing with the `mp4-atom` crate: one init segment
//! (`ftyp` + `moov` with `avc1`/`avcC`, `mp4a`/`esds` and `mvex`) per stream configuration,
//! then `moof` + `mdat` fragments built from runs of [`MediaFrame`]s.
//!
//! Each fragment is produced once and shared as [`Bytes`] by every consumer (LL-HLS parts,
//! segments, the live fMP4 stream, the recording), so the cost is per frame, not per viewer.
//!
//! Timelines: video uses a 90 kHz timescale (exact for millisecond timestamps); audio uses the
//! AAC sample rate and advances by exactly 1024 samples per access unit, re-anchored on the
//! frame's millisecond timestamp only when the two drift apart by more than two frames
//! (a publisher gap or a jump). Deriving audio time from rounded milliseconds would make
//! every sample 1014 or 1058 samples long and players would hear the seams.

use bytes::{BufMut as _, Bytes, BytesMut};
use mp4_atom::{
    Audio, Avc1, Avcc, AvccExt, Dinf, Dref, Encode as _, Esds, FourCC, Ftyp, Hdlr, Mdhd, Mdia, Mfhd, Minf, Moof, Moov,
    Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry,
    TrunSamples, Url, Visual, Vmhd, esds,
};

use crate::codec::{AacConfig, AvcConfig, StreamConfig};
use crate::frame::{MediaFrame, TrackKind};

/// Timescale of the video track (ticks per second): 90 per millisecond, no rounding.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Why a stream cannot be muxed.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    #[error("stream has neither a video nor an audio configuration")]
    NoTracks,
    #[error("box encoding failed: {0}")]
    Encode(#[from] mp4_atom::Error),
}

/// Track ids as written into the init segment: video is 1 when present, audio follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackIds {
    pub video: Option<u32>,
    pub audio: Option<u32>,
}

impl TrackIds {
    /// Assigns ids to the tracks a configuration has.
    pub fn of(cfg: &StreamConfig) -> Self {
        let video = cfg.video.as_ref().map(|_| 1);
        let audio = cfg.audio.as_ref().map(|_| if video.is_some() { 2 } else { 1 });
        TrackIds { video, audio }
    }
}

fn video_trak(id: u32, v: &AvcConfig) -> Trak {
    let w = u16::try_from(v.width).unwrap_or(u16::MAX);
    let h = u16::try_from(v.height).unwrap_or(u16::MAX);
    let avcc = Avcc {
        configuration_version: 1,
        avc_profile_indication: v.profile,
        profile_compatibility: v.compatibility,
        avc_level_indication: v.level,
        length_size: v.length_size,
        sequence_parameter_sets: v.sps.clone(),
        picture_parameter_sets: v.pps.clone(),
        ext: v.ext.as_ref().map(|e| AvccExt {
            chroma_format: e.chroma_format,
            bit_depth_luma: e.bit_depth_luma,
            bit_depth_chroma: e.bit_depth_chroma,
            sequence_parameter_sets_ext: e.sps_ext.clone(),
        }),
    };
    let avc1 = Avc1 {
        visual: Visual { data_reference_index: 1, width: w, height: h, ..Default::default() },
        avcc,
        btrt: None,
        colr: None,
        pasp: None,
        taic: None,
        fiel: None,
        spatial: None,
    };
    trak(
        Tkhd { track_id: id, enabled: true, in_movie: true, width: w.into(), height: h.into(), ..Default::default() },
        VIDEO_TIMESCALE,
        b"vide",
        "OnAir video",
        Minf { vmhd: Some(Vmhd::default()), ..minf(avc1.into()) },
    )
}

fn audio_trak(id: u32, a: &AacConfig) -> Trak {
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(a.channels),
            sample_size: 16,
            // The 16.16 field cannot hold rates above 65535 Hz; decoders read the esds.
            sample_rate: u16::try_from(a.sample_rate).unwrap_or(0).into(),
        },
        esds: Esds {
            es_desc: esds::EsDescriptor {
                es_id: u16::try_from(id).unwrap_or(2),
                depends_on_es_id: None,
                url: None,
                ocr_es_id: None,
                stream_priority: 0,
                dec_config: esds::DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 Audio
                    stream_type: 5,               // audio stream
                    dec_specific: Some(esds::DecoderSpecific {
                        profile: a.object_type,
                        freq_index: 0,
                        chan_conf: a.channels,
                        // Written verbatim when non-empty: the publisher's ASC, SBR signalling and all.
                        raw: a.raw.clone(),
                    }),
                    ..Default::default()
                },
                sl_config: esds::SLConfig {},
            },
        },
        btrt: None,
        taic: None,
    };
    trak(
        Tkhd { track_id: id, enabled: true, in_movie: true, volume: 1.into(), ..Default::default() },
        a.sample_rate,
        b"soun",
        "OnAir audio",
        Minf { smhd: Some(Smhd::default()), ..minf(mp4a.into()) },
    )
}

fn minf(codec: mp4_atom::Codec) -> Minf {
    Minf {
        dinf: Dinf { dref: Dref { entries: vec![Url { location: String::new() }.into()] } },
        stbl: Stbl {
            stsd: Stsd { codecs: vec![codec] },
            stts: Stts::default(),
            stsc: Stsc::default(),
            stsz: Stsz::default(),
            stco: Some(Stco::default()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn trak(tkhd: Tkhd, timescale: u32, handler: &[u8; 4], name: &str, minf: Minf) -> Trak {
    Trak {
        tkhd,
        mdia: Mdia {
            mdhd: Mdhd { timescale, language: "und".into(), ..Default::default() },
            hdlr: Hdlr { handler: FourCC::new(handler), name: name.into() },
            minf,
        },
        ..Default::default()
    }
}

/// Builds the init segment (`ftyp` + `moov`) for a stream's tracks.
pub fn init_segment(cfg: &StreamConfig) -> Result<Bytes, Fmp4Error> {
    let ids = TrackIds::of(cfg);
    let mut traks = Vec::new();
    if let (Some(id), Some(v)) = (ids.video, &cfg.video) {
        traks.push(video_trak(id, v));
    }
    if let (Some(id), Some(a)) = (ids.audio, &cfg.audio) {
        traks.push(audio_trak(id, a));
    }
    if traks.is_empty() {
        return Err(Fmp4Error::NoTracks);
    }
    let next_track_id = traks.len() as u32 + 1;
    let trex = traks
        .iter()
        .map(|t| Trex { track_id: t.tkhd.track_id, default_sample_description_index: 1, ..Default::default() })
        .collect();
    let moov = Moov {
        mvhd: Mvhd { timescale: 1000, rate: 1.into(), volume: 1.into(), next_track_id, ..Default::default() },
        mvex: Some(Mvex { mehd: None, trex }),
        trak: traks,
        ..Default::default()
    };
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![FourCC::new(b"iso6"), FourCC::new(b"cmfc"), FourCC::new(b"mp41")],
    };
    let mut out = BytesMut::with_capacity(1024);
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out.freeze())
}

/// `sample_flags` (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on nothing
/// (`sample_depends_on = 2`); any other is marked depending and non-sync.
const FLAGS_SYNC: u32 = 0x0200_0000;
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Per-track timeline state kept between fragments.
#[derive(Debug, Clone, Default)]
struct TrackClock {
    /// Decode time (track timescale) the next audio sample starts at, when anchored.
    next: Option<u64>,
    /// Duration of the last sample written (used when a run's end is not yet known).
    last_duration: u32,
}

/// Turns runs of frames into `moof` + `mdat` fragments, keeping the per-track timelines.
#[derive(Debug, Clone)]
pub struct Fragmenter {
    ids: TrackIds,
    audio_rate: u32,
    sequence: u32,
    video: TrackClock,
    audio: TrackClock,
}

/// One muxed fragment and the facts a playlist needs about it.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// `moof` + `mdat`, ready to send.
    pub data: Bytes,
    /// Number of samples written (all tracks).
    pub samples: usize,
}

impl Fragmenter {
    /// A fragmenter for a stream with this configuration (see [`init_segment`]).
    pub fn new(cfg: &StreamConfig) -> Self {
        let audio_rate = cfg.audio.as_ref().map_or(44_100, |a| a.sample_rate);
        Fragmenter {
            ids: TrackIds::of(cfg),
            audio_rate,
            sequence: 0,
            video: TrackClock { next: None, last_duration: 3000 },
            audio: TrackClock { next: None, last_duration: 1024 },
        }
    }

    /// Muxes `frames` (in arrival order, tracks interleaved) into one fragment.
    ///
    /// `next_video_dts` is the decode time of the first video frame after this run when it is
    /// already known (a part is cut when the next frame arrives), so the last video sample gets
    /// its exact duration; otherwise the previous sample's duration is repeated.
    /// Frames of a track the configuration lacks are skipped. Returns `None` for an empty run.
    pub fn fragment(&mut self, frames: &[MediaFrame], next_video_dts: Option<u64>) -> Option<Fragment> {
        let video: Vec<&MediaFrame> = if self.ids.video.is_some() {
            frames.iter().filter(|f| f.kind == TrackKind::Video).collect()
        } else {
            Vec::new()
        };
        let audio: Vec<&MediaFrame> = if self.ids.audio.is_some() {
            frames.iter().filter(|f| f.kind == TrackKind::Audio).collect()
        } else {
            Vec::new()
        };
        if video.is_empty() && audio.is_empty() {
            return None;
        }
        self.sequence = self.sequence.wrapping_add(1);

        let mut trafs = Vec::new();
        // (traf index, payload bytes) in mdat order, to patch data offsets afterwards.
        let mut payload_sizes = Vec::new();
        if let (Some(id), false) = (self.ids.video, video.is_empty()) {
            let base = video[0].dts.saturating_mul(90);
            let mut entries = Vec::with_capacity(video.len());
            for (i, f) in video.iter().enumerate() {
                let next = video.get(i + 1).map(|n| n.dts).or(next_video_dts.filter(|&n| n >= f.dts));
                let duration = match next {
                    Some(n) => u32::try_from(n.saturating_sub(f.dts).saturating_mul(90)).unwrap_or(u32::MAX),
                    None => self.video.last_duration,
                };
                self.video.last_duration = duration;
                entries.push(TrunEntry {
                    duration: Some(duration),
                    size: Some(f.data.len() as u32),
                    flags: Some(if f.keyframe { FLAGS_SYNC } else { FLAGS_NON_SYNC }),
                    cts: Some(i64::from(f.cts) * 90),
                });
            }
            payload_sizes.push(video.iter().map(|f| f.data.len()).sum::<usize>());
            trafs.push(traf(id, base, entries));
        }
        if let (Some(id), false) = (self.ids.audio, audio.is_empty()) {
            let rate = u64::from(self.audio_rate);
            let frame_len = 1024u64;
            let anchor = audio[0].dts.saturating_mul(rate) / 1000;
            let base = match self.audio.next {
                Some(n) if n.abs_diff(anchor) <= 2 * frame_len => n,
                _ => anchor,
            };
            let entries: Vec<TrunEntry> = audio
                .iter()
                .map(|f| TrunEntry {
                    duration: Some(frame_len as u32),
                    size: Some(f.data.len() as u32),
                    flags: Some(FLAGS_SYNC),
                    cts: None,
                })
                .collect();
            self.audio.next = Some(base + frame_len * audio.len() as u64);
            self.audio.last_duration = frame_len as u32;
            payload_sizes.push(audio.iter().map(|f| f.data.len()).sum::<usize>());
            trafs.push(traf(id, base, entries));
        }

        let mut moof = Moof { mfhd: Mfhd { sequence_number: self.sequence }, traf: trafs };
        // Data offsets count from the start of the moof (default-base-is-moof); the moof's
        // size does not depend on the offset values, so encode once to measure it.
        let mut probe = BytesMut::new();
        moof.encode(&mut probe).ok()?;
        let moof_len = probe.len();
        let mut offset = moof_len + 8;
        for (t, size) in moof.traf.iter_mut().zip(&payload_sizes) {
            if let Some(run) = t.trun.first_mut() {
                run.data_offset = Some(i32::try_from(offset).unwrap_or(i32::MAX));
            }
            offset += size;
        }
        let total = offset;
        let mut out = BytesMut::with_capacity(total);
        moof.encode(&mut out).ok()?;
        let mdat_len = total - moof_len;
        out.put_u32(u32::try_from(mdat_len).unwrap_or(u32::MAX));
        out.put_slice(b"mdat");
        for f in video.iter().chain(audio.iter()) {
            out.put_slice(&f.data);
        }
        Some(Fragment { data: out.freeze(), samples: video.len() + audio.len() })
    }
}

fn traf(track_id: u32, base: u64, entries: Vec<TrunEntry>) -> Traf {
    Traf {
        tfhd: Tfhd { track_id, default_base_is_moof: true, ..Default::default() },
        tfdt: Some(Tfdt { base_media_decode_time: base }),
        trun: vec![Trun { data_offset: Some(0), samples: TrunSamples::Explicit(entries) }],
        sbgp: vec![],
        sgpd: vec![],
        subs: vec![],
        saiz: vec![],
        saio: vec![],
        meta: None,
        senc: None,
        udta: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::frame::CodecConfig;
    use mp4_atom::Decode as _;

    pub(crate) fn config() -> StreamConfig {
        let mut s = StreamConfig::default();
        s.apply(&CodecConfig::Avc { record: Bytes::from_static(crate::codec::tests::AVCC_640X360) }).unwrap();
        s.apply(&CodecConfig::Aac { config: Bytes::from_static(&[0x12, 0x10]) }).unwrap();
        s
    }

    fn vframe(dts: u64, key: bool, len: usize) -> MediaFrame {
        MediaFrame { kind: TrackKind::Video, dts, cts: 66, keyframe: key, data: Bytes::from(vec![7u8; len]) }
    }
    fn aframe(dts: u64, len: usize) -> MediaFrame {
        MediaFrame { kind: TrackKind::Audio, dts, cts: 0, keyframe: true, data: Bytes::from(vec![9u8; len]) }
    }

    #[test]
    fn init_segment_decodes_back() {
        let init = init_segment(&config()).unwrap();
        let mut buf = std::io::Cursor::new(&init[..]);
        let ftyp = Ftyp::decode(&mut buf).unwrap();
        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        let moov = Moov::decode(&mut buf).unwrap();
        assert_eq!(moov.trak.len(), 2);
        assert_eq!(moov.mvex.unwrap().trex.len(), 2);
        assert_eq!(moov.trak[0].tkhd.width, 640u16.into());
        assert_eq!(moov.trak[1].mdia.mdhd.timescale, 44_100);
        assert!(init_segment(&StreamConfig::default()).is_err());
    }

    #[test]
    fn fragment_offsets_durations_and_flags() {
        let mut f = Fragmenter::new(&config());
        let frames =
            [vframe(0, true, 100), aframe(0, 10), vframe(33, false, 50), aframe(23, 11), vframe(67, false, 60)];
        let frag = f.fragment(&frames, Some(100)).unwrap();
        assert_eq!(frag.samples, 5);
        let mut buf = std::io::Cursor::new(&frag.data[..]);
        let moof = Moof::decode(&mut buf).unwrap();
        assert_eq!(moof.mfhd.sequence_number, 1);
        let v = &moof.traf[0];
        let entries: Vec<_> = v.trun[0].samples.iter().collect();
        let durations: Vec<_> = entries.iter().map(|e| e.duration.unwrap()).collect();
        assert_eq!(durations, vec![33 * 90, 34 * 90, 33 * 90]);
        assert_eq!(entries[0].flags, Some(FLAGS_SYNC));
        assert_eq!(entries[1].flags, Some(FLAGS_NON_SYNC));
        assert_eq!(entries[0].cts, Some(66 * 90));
        let moof_len = buf.position() as usize;
        // The mdat follows; the video run starts right after its header, audio after video.
        assert_eq!(&frag.data[moof_len + 4..moof_len + 8], b"mdat");
        assert_eq!(v.trun[0].data_offset, Some(moof_len as i32 + 8));
        assert_eq!(moof.traf[1].trun[0].data_offset, Some(moof_len as i32 + 8 + 210));
        assert_eq!(frag.data.len(), moof_len + 8 + 210 + 21);
        assert_eq!(frag.data[moof_len + 8], 7);
        assert_eq!(frag.data[moof_len + 8 + 210], 9);
    }

    #[test]
    fn audio_timeline_is_continuous_until_a_jump() {
        let mut f = Fragmenter::new(&config());
        let tfdt = |data: &Bytes| {
            let moof = Moof::decode(&mut std::io::Cursor::new(&data[..])).unwrap();
            moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time
        };
        // 44.1 kHz: 1024 samples = 23.22 ms; millisecond timestamps round.
        let a = f.fragment(&[aframe(0, 4), aframe(23, 4)], None).unwrap();
        let b = f.fragment(&[aframe(46, 4)], None).unwrap();
        let c = f.fragment(&[aframe(5_000, 4)], None).unwrap();
        assert_eq!(tfdt(&a.data), 0);
        assert_eq!(tfdt(&b.data), 2048);
        assert_eq!(tfdt(&c.data), 5_000 * 44_100 / 1000);
        assert!(f.fragment(&[], None).is_none());
    }

    proptest::proptest! {
        #[test]
        fn fragments_always_decode(sizes in proptest::collection::vec((0usize..300, proptest::prelude::any::<bool>()), 1..40)) {
            let mut f = Fragmenter::new(&config());
            let frames: Vec<MediaFrame> = sizes.iter().enumerate().map(|(i, (len, audio))| {
                if *audio { aframe(i as u64 * 20, *len) } else { vframe(i as u64 * 20, i == 0, *len) }
            }).collect();
            let frag = f.fragment(&frames, None).unwrap();
            let moof = Moof::decode(&mut std::io::Cursor::new(&frag.data[..])).unwrap();
            let samples: usize = moof.traf.iter().map(|t| t.trun[0].samples.len()).sum();
            proptest::prop_assert_eq!(samples, frames.len());
            let payload: usize = frames.iter().map(|f| f.data.len()).sum();
            proptest::prop_assert!(frag.data.len() > payload);
        }
    }
}
