//! A live room's profile and its rules: id syntax, byte limits of the profile
//! fields, and the group-attribute limits (docs/cloud-compat.md, "Room limits").

use std::collections::BTreeMap;

use crate::event::ProfileChange;
use crate::random::RandomSource;
use crate::{Code, Millis, Rejection};

/// Prefix of server-generated room ids (custom ids may not use it).
pub const GENERATED_PREFIX: &str = "@TGS#";

/// Checks a caller-chosen room id: printable ASCII, 1–48 bytes, no `@TGS#` prefix.
pub fn validate_custom_id(id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > 48 {
        return Err(Rejection::new(Code::InvalidRoomId, format!("room id must be 1-48 bytes, got {}", id.len())));
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Rejection::new(Code::InvalidRoomId, "room id must be printable ASCII (0x20-0x7e)"));
    }
    if id.starts_with(GENERATED_PREFIX) {
        return Err(Rejection::new(Code::InvalidRoomId, "custom room ids may not start with @TGS#"));
    }
    Ok(())
}

/// A fresh `@TGS#…` id (10 characters of `[0-9A-Z]` after the prefix).
pub fn generate_id(rng: &mut impl RandomSource) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = String::from(GENERATED_PREFIX);
    for _ in 0..10 {
        id.push(char::from(ALPHABET[rng.below(ALPHABET.len())]));
    }
    id
}

/// Byte limits of the profile and attributes (configurable; defaults from the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// `Name` bytes.
    pub name: usize,
    /// `Introduction` bytes.
    pub introduction: usize,
    /// `Notification` bytes.
    pub notification: usize,
    /// `FaceUrl` bytes.
    pub face_url: usize,
    /// Number of `AppDefinedData` keys.
    pub app_defined_keys: usize,
    /// Bytes of one `AppDefinedData` value.
    pub app_defined_value: usize,
    /// Number of attribute keys.
    pub attr_keys: usize,
    /// Bytes of one attribute key.
    pub attr_key: usize,
    /// Bytes of one attribute value.
    pub attr_value: usize,
    /// Bytes of all attribute keys and values together.
    pub attr_total: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            name: 30,
            introduction: 240,
            notification: 300,
            face_url: 100,
            app_defined_keys: 16,
            app_defined_value: 4096,
            attr_keys: 16,
            attr_key: 32,
            attr_value: 4096,
            attr_total: 16 * 1024,
        }
    }
}

/// A room's profile as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomProfile {
    /// Room (group) id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Introduction text.
    pub introduction: String,
    /// Notice text (may be JSON text, e.g. text + image URL).
    pub notification: String,
    /// Cover image URL.
    pub face_url: String,
    /// The anchor's account (may be empty).
    pub owner: String,
    /// Custom room fields.
    pub app_defined_data: BTreeMap<String, String>,
    /// Group attributes (the AVChatRoom key/value store).
    pub attrs: BTreeMap<String, String>,
    /// Only owner/admins may speak.
    pub mute_all: bool,
    /// Live state name (`upcoming`, `live`, `paused`, `ended`, `replay`).
    pub state: String,
    /// Creation time (Unix ms).
    pub created_at: Millis,
    /// Incremented on every profile change (the cloud's `InfoSeq`).
    pub info_seq: u64,
    /// Announced start time (Unix ms; 0 = none).
    pub scheduled_at: Millis,
    /// When the live state last changed (Unix ms).
    pub state_changed_at: Millis,
    /// The anchor's stream name (RTMP `live/<stream>`).
    pub stream: String,
    /// Where the replay can be watched once the room is in `replay`.
    pub replay_url: String,
    /// When a profile field or attribute last changed (Unix ms; 0 = not since
    /// creation). Read through [`RoomProfile::last_info_time`].
    pub info_changed_at: Millis,
}

/// Requested profile changes; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfilePatch {
    /// New name.
    pub name: Option<String>,
    /// New introduction.
    pub introduction: Option<String>,
    /// New notice.
    pub notification: Option<String>,
    /// New face URL.
    pub face_url: Option<String>,
    /// Custom fields to set; an empty value deletes the key.
    pub app_defined_data: Option<BTreeMap<String, String>>,
    /// Mute-all switch.
    pub mute_all: Option<bool>,
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::new(
            Code::InvalidParam,
            format!("{field} is {} bytes; the limit is {max} bytes", value.len()),
        ));
    }
    Ok(())
}

impl RoomProfile {
    /// A new room with default state `upcoming`.
    pub fn new(id: String, name: String, owner: String, now: Millis) -> Self {
        let stream = crate::live::default_stream_name(&id);
        RoomProfile {
            id,
            name,
            owner,
            state: "upcoming".into(),
            created_at: now,
            state_changed_at: now,
            stream,
            ..Default::default()
        }
    }

    /// The cloud's `LastInfoTime` (Unix ms): the last profile or attribute change,
    /// or the creation when nothing changed since.
    pub fn last_info_time(&self) -> Millis {
        if self.info_changed_at == 0 { self.created_at } else { self.info_changed_at.max(self.created_at) }
    }

    /// Checks every field against the limits (used on create).
    pub fn validate(&self, limits: &RoomLimits) -> Result<(), Rejection> {
        check_len("Name", &self.name, limits.name)?;
        check_len("Introduction", &self.introduction, limits.introduction)?;
        check_len("Notification", &self.notification, limits.notification)?;
        check_len("FaceUrl", &self.face_url, limits.face_url)?;
        check_app_defined(&self.app_defined_data, limits)?;
        check_attrs(&self.attrs, limits)
    }

    /// Applies a patch atomically (all or nothing) and returns what changed, plus
    /// whether mute-all switched.
    pub fn apply(
        &mut self,
        patch: ProfilePatch,
        limits: &RoomLimits,
    ) -> Result<(ProfileChange, Option<bool>), Rejection> {
        let mut next = self.clone();
        let mut change = ProfileChange::default();
        if let Some(v) = patch.name.filter(|v| *v != self.name) {
            check_len("Name", &v, limits.name)?;
            next.name = v.clone();
            change.name = Some(v);
        }
        if let Some(v) = patch.introduction.filter(|v| *v != self.introduction) {
            check_len("Introduction", &v, limits.introduction)?;
            next.introduction = v.clone();
            change.introduction = Some(v);
        }
        if let Some(v) = patch.notification.filter(|v| *v != self.notification) {
            check_len("Notification", &v, limits.notification)?;
            next.notification = v.clone();
            change.notification = Some(v);
        }
        if let Some(v) = patch.face_url.filter(|v| *v != self.face_url) {
            check_len("FaceUrl", &v, limits.face_url)?;
            next.face_url = v.clone();
            change.face_url = Some(v);
        }
        if let Some(fields) = patch.app_defined_data {
            let mut changed = BTreeMap::new();
            for (k, v) in fields {
                let old = next.app_defined_data.get(&k);
                if v.is_empty() {
                    if old.is_some() {
                        next.app_defined_data.remove(&k);
                        changed.insert(k, v);
                    }
                } else if old != Some(&v) {
                    next.app_defined_data.insert(k.clone(), v.clone());
                    changed.insert(k, v);
                }
            }
            check_app_defined(&next.app_defined_data, limits)?;
            if !changed.is_empty() {
                change.app_defined_data = Some(changed);
            }
        }
        let mute_change = patch.mute_all.filter(|m| *m != self.mute_all);
        if let Some(m) = mute_change {
            next.mute_all = m;
        }
        if change != ProfileChange::default() || mute_change.is_some() {
            next.info_seq += 1;
        }
        *self = next;
        Ok((change, mute_change))
    }
}

fn check_app_defined(map: &BTreeMap<String, String>, limits: &RoomLimits) -> Result<(), Rejection> {
    if map.len() > limits.app_defined_keys {
        return Err(Rejection::new(
            Code::InvalidParam,
            format!("AppDefinedData has {} keys; the limit is {}", map.len(), limits.app_defined_keys),
        ));
    }
    for (k, v) in map {
        if k.is_empty() {
            return Err(Rejection::new(Code::InvalidParam, "AppDefinedData keys may not be empty"));
        }
        check_len(&format!("AppDefinedData[{k}]"), v, limits.app_defined_value)?;
    }
    Ok(())
}

/// Checks a full attribute set against the limits (16 keys, 32 B keys, 4 KB values,
/// 16 KB total). Failures carry 10049, the cloud's attribute-limit code.
pub fn check_attrs(attrs: &BTreeMap<String, String>, limits: &RoomLimits) -> Result<(), Rejection> {
    let fail = |info: String| Err(Rejection::new(Code::AttrLimit, info));
    if attrs.len() > limits.attr_keys {
        return fail(format!("{} attributes; the limit is {} keys", attrs.len(), limits.attr_keys));
    }
    let mut total = 0;
    for (k, v) in attrs {
        if k.is_empty() || k.len() > limits.attr_key {
            return fail(format!("attribute key '{k}' must be 1-{} bytes", limits.attr_key));
        }
        if v.len() > limits.attr_value {
            return fail(format!("attribute '{k}' value is {} bytes; the limit is {}", v.len(), limits.attr_value));
        }
        total += k.len() + v.len();
    }
    if total > limits.attr_total {
        return fail(format!("attributes total {total} bytes; the limit is {}", limits.attr_total));
    }
    Ok(())
}

/// How an attribute write combines with what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrWrite {
    /// Add or overwrite the given keys (`modify_group_attr`).
    Modify,
    /// Replace the whole set (`set_group_attr`).
    Set,
    /// Remove the given keys (`delete_group_attr`).
    Delete,
    /// Remove everything (`clear_group_attr`).
    Clear,
}

/// Computes the attribute set after a write, checking the limits; the caller stores it.
pub fn write_attrs(
    current: &BTreeMap<String, String>,
    op: AttrWrite,
    given: BTreeMap<String, String>,
    limits: &RoomLimits,
) -> Result<BTreeMap<String, String>, Rejection> {
    let next = match op {
        AttrWrite::Modify => {
            let mut next = current.clone();
            next.extend(given);
            next
        }
        AttrWrite::Set => given,
        AttrWrite::Delete => {
            let mut next = current.clone();
            for k in given.keys() {
                next.remove(k);
            }
            next
        }
        AttrWrite::Clear => BTreeMap::new(),
    };
    check_attrs(&next, limits)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    #[test]
    fn custom_ids() {
        for ok in ["room1", "a", "Live Room #7", &"x".repeat(48)] {
            assert!(validate_custom_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", &"x".repeat(49), "@TGS#abc", "tab\there", "한국", "nl\n"] {
            assert_eq!(validate_custom_id(bad).map_err(|r| r.code), Err(Code::InvalidRoomId), "{bad:?}");
        }
    }

    #[test]
    fn last_info_time_is_creation_until_a_change() {
        let mut p = RoomProfile::new("r".into(), "n".into(), String::new(), 1_000);
        assert_eq!(p.last_info_time(), 1_000);
        p.info_changed_at = 5_000;
        assert_eq!(p.last_info_time(), 5_000);
    }

    #[test]
    fn generated_ids_are_distinct_and_well_formed() {
        let mut rng = SplitMix64::new(9);
        let a = generate_id(&mut rng);
        let b = generate_id(&mut rng);
        assert_ne!(a, b);
        assert!(a.starts_with("@TGS#") && a.len() == 15);
    }

    #[test]
    fn profile_limits_are_in_bytes_and_patches_are_atomic() {
        let limits = RoomLimits::default();
        let mut p = RoomProfile::new("r".into(), "n".into(), "owner".into(), 0);
        // 10 Hangul syllables = 30 bytes: fits; 11 = 33 bytes: too long.
        let ok = "가".repeat(10);
        let (change, _) =
            p.apply(ProfilePatch { name: Some(ok.clone()), ..Default::default() }, &limits).expect("fits");
        assert_eq!(change.name, Some(ok));
        assert_eq!(p.info_seq, 1);
        let bad = ProfilePatch { introduction: Some("i".into()), name: Some("가".repeat(11)), ..Default::default() };
        assert_eq!(p.apply(bad, &limits).map_err(|r| r.code), Err(Code::InvalidParam));
        assert_eq!(p.introduction, "", "nothing applied when one field fails");
        let notice = ProfilePatch { notification: Some("n".repeat(301)), ..Default::default() };
        assert!(p.apply(notice, &limits).is_err());
        let (change, mute) = p.apply(ProfilePatch { mute_all: Some(true), ..Default::default() }, &limits).expect("ok");
        assert_eq!((change, mute), (ProfileChange::default(), Some(true)));
        let (_, mute) = p.apply(ProfilePatch { mute_all: Some(true), ..Default::default() }, &limits).expect("ok");
        assert_eq!(mute, None, "no change, no event");
    }

    #[test]
    fn app_defined_data_empty_value_deletes() {
        let limits = RoomLimits::default();
        let mut p = RoomProfile::new("r".into(), "n".into(), String::new(), 0);
        let set = BTreeMap::from([("a".to_string(), "1".to_string())]);
        p.apply(ProfilePatch { app_defined_data: Some(set), ..Default::default() }, &limits).expect("ok");
        let del = BTreeMap::from([("a".to_string(), String::new())]);
        let (change, _) =
            p.apply(ProfilePatch { app_defined_data: Some(del), ..Default::default() }, &limits).expect("ok");
        assert!(p.app_defined_data.is_empty());
        assert_eq!(change.app_defined_data.map(|m| m.len()), Some(1));
    }

    #[test]
    fn attribute_limits() {
        let limits = RoomLimits::default();
        let empty = BTreeMap::new();
        let many: BTreeMap<_, _> = (0..17).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert_eq!(write_attrs(&empty, AttrWrite::Set, many, &limits).map_err(|r| r.code), Err(Code::AttrLimit));
        let long_key = BTreeMap::from([("k".repeat(33), "v".to_string())]);
        assert!(write_attrs(&empty, AttrWrite::Modify, long_key, &limits).is_err());
        let big_value = BTreeMap::from([("k".to_string(), "v".repeat(4097))]);
        assert!(write_attrs(&empty, AttrWrite::Modify, big_value, &limits).is_err());
        let total: BTreeMap<_, _> = (0..5).map(|i| (format!("k{i}"), "v".repeat(4000))).collect();
        assert!(write_attrs(&empty, AttrWrite::Set, total, &limits).is_err(), "20 KB total");
        let a = write_attrs(
            &empty,
            AttrWrite::Modify,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
            &limits,
        )
        .expect("ok");
        let b = write_attrs(&a, AttrWrite::Delete, BTreeMap::from([("a".into(), String::new())]), &limits).expect("ok");
        assert_eq!(b.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(write_attrs(&b, AttrWrite::Clear, BTreeMap::new(), &limits).expect("ok").is_empty());
    }
}
