//! Messages as the cloud shapes them: a body of typed elements, a priority, the
//! sender's `Random`, and what the server stamps on delivery (seq, time, profile).
//!
//! The element structs use the cloud's field names verbatim (`MsgType`,
//! `MsgContent`, `Text`, `Data`…) because that JSON shape *is* the contract a cloud
//! client or backend already speaks; inventing our own would only add a translation.

use serde::{Deserialize, Serialize};

use crate::{Code, Millis, Rejection};

/// Largest message the room accepts: body + `CloudCustomData`, as JSON bytes
/// (the cloud's 12 KB; 80002 beyond).
pub const MAX_MESSAGE_BYTES: usize = 12 * 1024;

/// Delivery priority. Higher survives frequency control first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Priority {
    /// Below `Low`; the Web SDK's fourth level (not in the REST reference).
    Lowest = 0,
    /// Likes and other droppable noise.
    Low = 1,
    /// Text, voice, images: the default.
    #[default]
    Normal = 2,
    /// Gifts and rewards.
    High = 3,
}

impl Priority {
    /// All priorities from highest to lowest: the order frequency control serves.
    pub const HIGH_TO_LOW: [Priority; 4] = [Priority::High, Priority::Normal, Priority::Low, Priority::Lowest];

    /// Parses the cloud's case-sensitive names.
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "High" => Some(Priority::High),
            "Normal" => Some(Priority::Normal),
            "Low" => Some(Priority::Low),
            "Lowest" => Some(Priority::Lowest),
            _ => None,
        }
    }

    /// The cloud's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "High",
            Priority::Normal => "Normal",
            Priority::Low => "Low",
            Priority::Lowest => "Lowest",
        }
    }

    /// Index into per-priority arrays (0 = Lowest … 3 = High).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `TIMTextElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TextElem {
    /// The text, rendered by clients as text (never HTML).
    pub text: String,
}

/// `TIMCustomElem`: business payloads (gifts, likes…) in `Data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomElem {
    /// The payload (often JSON text).
    #[serde(default)]
    pub data: String,
    /// Offline-push text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// APNs passthrough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    /// APNs sound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound: Option<String>,
}

/// `TIMFaceElem`: an emoji by index and optional data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceElem {
    /// Emoji index.
    pub index: i64,
    /// Optional emoji data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// One rendition of an image in `TIMImageElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// 1 original, 2 large, 3 thumbnail.
    #[serde(rename = "Type")]
    pub kind: i64,
    /// Bytes.
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// Pixels.
    #[serde(rename = "Width", default)]
    pub width: u64,
    /// Pixels.
    #[serde(rename = "Height", default)]
    pub height: u64,
    /// Where to fetch it.
    #[serde(rename = "URL")]
    pub url: String,
}

/// `TIMImageElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageElem {
    /// Image id.
    #[serde(rename = "UUID", default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// JPG=1, GIF=2, PNG=3, BMP=4, other=255.
    #[serde(rename = "ImageFormat", default, skip_serializing_if = "Option::is_none")]
    pub image_format: Option<i64>,
    /// Renditions.
    #[serde(rename = "ImageInfoArray")]
    pub image_info_array: Vec<ImageInfo>,
}

/// `TIMLocationElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocationElem {
    /// Place description.
    #[serde(default)]
    pub desc: String,
    /// Degrees.
    pub latitude: f64,
    /// Degrees.
    pub longitude: f64,
}

/// `TIMSoundElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoundElem {
    /// Download URL.
    #[serde(rename = "Url")]
    pub url: String,
    /// File id.
    #[serde(rename = "UUID", default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Bytes.
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// Duration in seconds.
    #[serde(rename = "Second", default)]
    pub second: u64,
    /// The cloud sets 2.
    #[serde(rename = "Download_Flag", default, skip_serializing_if = "Option::is_none")]
    pub download_flag: Option<i64>,
}

/// `TIMFileElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileElem {
    /// Download URL.
    #[serde(rename = "Url")]
    pub url: String,
    /// File id.
    #[serde(rename = "UUID", default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Bytes.
    #[serde(rename = "FileSize", default)]
    pub file_size: u64,
    /// Display name.
    #[serde(rename = "FileName", default)]
    pub file_name: String,
    /// The cloud sets 2.
    #[serde(rename = "Download_Flag", default, skip_serializing_if = "Option::is_none")]
    pub download_flag: Option<i64>,
}

/// `TIMVideoFileElem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VideoFileElem {
    /// Download URL.
    pub video_url: String,
    /// Video id.
    #[serde(rename = "VideoUUID", default, skip_serializing_if = "Option::is_none")]
    pub video_uuid: Option<String>,
    /// Bytes.
    #[serde(default)]
    pub video_size: u64,
    /// Seconds.
    #[serde(default)]
    pub video_second: u64,
    /// e.g. "mp4".
    #[serde(default)]
    pub video_format: String,
    /// The cloud sets 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_download_flag: Option<i64>,
    /// Thumbnail URL.
    #[serde(default)]
    pub thumb_url: String,
    /// Thumbnail id.
    #[serde(rename = "ThumbUUID", default, skip_serializing_if = "Option::is_none")]
    pub thumb_uuid: Option<String>,
    /// Bytes.
    #[serde(default)]
    pub thumb_size: u64,
    /// Pixels.
    #[serde(default)]
    pub thumb_width: u64,
    /// Pixels.
    #[serde(default)]
    pub thumb_height: u64,
    /// e.g. "JPG".
    #[serde(default)]
    pub thumb_format: String,
    /// The cloud sets 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_download_flag: Option<i64>,
}

/// One element of a message body: `{"MsgType": "...", "MsgContent": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "MsgType", content = "MsgContent")]
pub enum MsgElem {
    /// Plain text.
    #[serde(rename = "TIMTextElem")]
    Text(TextElem),
    /// Business payload.
    #[serde(rename = "TIMCustomElem")]
    Custom(CustomElem),
    /// Emoji.
    #[serde(rename = "TIMFaceElem")]
    Face(FaceElem),
    /// Image.
    #[serde(rename = "TIMImageElem")]
    Image(ImageElem),
    /// Location.
    #[serde(rename = "TIMLocationElem")]
    Location(LocationElem),
    /// Voice clip.
    #[serde(rename = "TIMSoundElem")]
    Sound(SoundElem),
    /// Video file.
    #[serde(rename = "TIMVideoFileElem")]
    VideoFile(VideoFileElem),
    /// File.
    #[serde(rename = "TIMFileElem")]
    File(FileElem),
}

/// Checks the rules the cloud applies to a body: not empty, at most one custom
/// element, and body + custom data within [`MAX_MESSAGE_BYTES`] (as JSON).
pub fn validate_body(body: &[MsgElem], cloud_custom_data: &str) -> Result<(), Rejection> {
    if body.is_empty() {
        return Err(Rejection::new(Code::BodyFormat, "MsgBody must contain at least one element"));
    }
    if body.iter().filter(|e| matches!(e, MsgElem::Custom(_))).count() > 1 {
        return Err(Rejection::new(Code::BodyFormat, "MsgBody may contain at most one TIMCustomElem"));
    }
    let size = serde_json::to_vec(body).map(|v| v.len()).unwrap_or(usize::MAX) + cloud_custom_data.len();
    if size > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(
            Code::MsgTooLong,
            format!("message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (MsgBody + CloudCustomData)"),
        ));
    }
    Ok(())
}

/// The human-readable text of a body: every `TIMTextElem` and the text fields of a
/// `TIMCustomElem`, joined by newlines (for flood detection and content checks).
pub fn body_text(body: &[MsgElem]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for elem in body {
        match elem {
            MsgElem::Text(t) => parts.push(&t.text),
            MsgElem::Custom(c) => {
                parts.push(&c.data);
                parts.extend(c.desc.as_deref());
                parts.extend(c.ext.as_deref());
            }
            _ => {}
        }
    }
    parts.join("\n")
}

/// Who sent a message, as stamped on delivery so clients never look it up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SenderProfile {
    /// Account id.
    pub user_id: String,
    /// Display name.
    pub nick: String,
    /// Avatar URL.
    pub avatar: String,
    /// User level.
    pub level: u32,
}

/// A message a client (or the admin API on behalf of a user) asks to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The sender, with the profile to stamp.
    pub sender: SenderProfile,
    /// Frequency-control priority.
    pub priority: Priority,
    /// The sender's `Random` (duplicate suppression key).
    pub random: u32,
    /// Elements.
    pub body: Vec<MsgElem>,
    /// Opaque business data delivered with the message.
    pub cloud_custom_data: String,
}

/// A message the room delivered: immutable, shared by history, storage and fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Per-room sequence number; strictly increasing without gaps.
    pub seq: u64,
    /// Server time of delivery, Unix milliseconds (seconds on the wire: `MsgTime`).
    pub time_ms: Millis,
    /// Sender and stamped profile.
    pub sender: SenderProfile,
    /// Priority it was sent with.
    pub priority: Priority,
    /// The sender's `Random`.
    pub random: u32,
    /// Elements.
    pub body: Vec<MsgElem>,
    /// Opaque business data.
    pub cloud_custom_data: String,
}

impl ChatMessage {
    /// `MsgTime` as the cloud reports it: Unix seconds.
    pub fn time_secs(&self) -> u64 {
        self.time_ms / 1000
    }
}

/// Checks a user profile field's byte length (`nick` 64, avatar URL 500: the same
/// limits on every face).
pub fn check_profile_field(name: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::new(Code::InvalidParam, format!("{name} is {} bytes; the limit is {max}", value.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_type_round_trips_in_the_cloud_shape() {
        let json = r#"[
            {"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}},
            {"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"cmd\":\"like\"}","Desc":"d","Ext":"e","Sound":"s"}},
            {"MsgType":"TIMFaceElem","MsgContent":{"Index":1,"Data":"smile"}},
            {"MsgType":"TIMImageElem","MsgContent":{"UUID":"u","ImageFormat":1,"ImageInfoArray":[{"Type":1,"Size":10,"Width":2,"Height":3,"URL":"http://x/a.jpg"}]}},
            {"MsgType":"TIMLocationElem","MsgContent":{"Desc":"here","Latitude":1.5,"Longitude":2.5}},
            {"MsgType":"TIMSoundElem","MsgContent":{"Url":"http://x/a.mp3","UUID":"s","Size":1,"Second":2,"Download_Flag":2}},
            {"MsgType":"TIMVideoFileElem","MsgContent":{"VideoUrl":"http://x/v.mp4","VideoUUID":"v","VideoSize":1,"VideoSecond":2,"VideoFormat":"mp4","VideoDownloadFlag":2,"ThumbUrl":"http://x/t.jpg","ThumbUUID":"t","ThumbSize":1,"ThumbWidth":2,"ThumbHeight":3,"ThumbFormat":"JPG","ThumbDownloadFlag":2}},
            {"MsgType":"TIMFileElem","MsgContent":{"Url":"http://x/f","UUID":"f","FileSize":3,"FileName":"f.txt","Download_Flag":2}}
        ]"#;
        let body: Vec<MsgElem> = serde_json::from_str(json).expect("parses");
        assert_eq!(body.len(), 8);
        let again: Vec<MsgElem> =
            serde_json::from_str(&serde_json::to_string(&body).expect("encodes")).expect("reparses");
        assert_eq!(body, again);
        let original: serde_json::Value = serde_json::from_str(json).expect("value");
        assert_eq!(serde_json::to_value(&body).expect("value"), original);
    }

    #[test]
    fn unknown_types_and_bad_fields_are_refused() {
        assert!(serde_json::from_str::<MsgElem>(r#"{"MsgType":"TIMNope","MsgContent":{}}"#).is_err());
        assert!(serde_json::from_str::<MsgElem>(r#"{"MsgType":"TIMTextElem","MsgContent":{"Text":5}}"#).is_err());
    }

    #[test]
    fn body_rules() {
        let text = |t: &str| MsgElem::Text(TextElem { text: t.into() });
        let custom = || MsgElem::Custom(CustomElem { data: "x".into(), desc: None, ext: None, sound: None });
        assert_eq!(validate_body(&[], "").map_err(|r| r.code), Err(Code::BodyFormat));
        assert_eq!(validate_body(&[custom(), custom()], "").map_err(|r| r.code), Err(Code::BodyFormat));
        assert!(validate_body(&[text("a"), custom()], "").is_ok());
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(validate_body(&[text(&big)], "").map_err(|r| r.code), Err(Code::MsgTooLong));
        assert_eq!(validate_body(&[text("a")], &big).map_err(|r| r.code), Err(Code::MsgTooLong));
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(
                |f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            ),
            prop_oneof![
                Just("TIMTextElem".to_string()),
                Just("TIMCustomElem".to_string()),
                Just("TIMImageElem".to_string()),
                Just("MsgType".to_string()),
                Just("MsgContent".to_string()),
                ".{0,8}",
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("MsgType".to_string()),
                        Just("MsgContent".to_string()),
                        Just("Text".to_string()),
                        Just("Data".to_string()),
                        Just("ImageInfoArray".to_string()),
                        "[A-Za-z_]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_json_as_a_body_never_panics_and_accepted_bodies_round_trip(v in arb_json()) {
            if let Ok(body) = serde_json::from_value::<Vec<MsgElem>>(v) {
                let _ = validate_body(&body, "");
                let again: Vec<MsgElem> = serde_json::from_str(&serde_json::to_string(&body).expect("encodes")).expect("reparses");
                proptest::prop_assert_eq!(again.len(), body.len());
            }
        }

        #[test]
        fn text_bodies_of_any_content_round_trip(texts in proptest::collection::vec(".{0,64}", 1..5)) {
            let body: Vec<MsgElem> = texts.iter().map(|t| MsgElem::Text(TextElem { text: t.clone() })).collect();
            let json = serde_json::to_string(&body).expect("encodes");
            let again: Vec<MsgElem> = serde_json::from_str(&json).expect("decodes");
            proptest::prop_assert_eq!(again, body);
        }
    }

    #[test]
    fn priorities_order_and_names() {
        assert!(
            Priority::High > Priority::Normal && Priority::Normal > Priority::Low && Priority::Low > Priority::Lowest
        );
        for p in Priority::HIGH_TO_LOW {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("high"), None);
    }
}

/// `Desc` values of a `TIMCustomElem` that only the server authors: the pages draw
/// them as server announcements (`gift`: "X sent Rocket ×9"), so a user who could send
/// one could fake a gift. Compared without case or surrounding space.
pub const SERVER_DESCS: [&str; 1] = ["gift"];

/// The first server-reserved `Desc` (see [`SERVER_DESCS`]) in `body`, if any.
pub fn server_reserved_desc(body: &[MsgElem]) -> Option<&'static str> {
    body.iter().find_map(|elem| match elem {
        MsgElem::Custom(c) => {
            let desc = c.desc.as_deref()?.trim();
            SERVER_DESCS.iter().copied().find(|r| desc.eq_ignore_ascii_case(r))
        }
        _ => None,
    })
}

#[cfg(test)]
mod reserved_tests {
    use super::*;

    fn custom(desc: &str) -> MsgElem {
        MsgElem::Custom(CustomElem { data: "{}".into(), desc: Some(desc.into()), ext: None, sound: None })
    }

    #[test]
    fn gift_descs_are_reserved_in_any_case() {
        assert_eq!(server_reserved_desc(&[custom("gift")]), Some("gift"));
        assert_eq!(server_reserved_desc(&[custom(" GIFT ")]), Some("gift"));
        assert_eq!(server_reserved_desc(&[custom("gifted")]), None);
        assert_eq!(server_reserved_desc(&[custom("")]), None);
    }
}
