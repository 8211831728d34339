//! The faces: one module per way of talking to OnAir, each a router of its own over
//! the hub and the media service. A face never imports another face; what they share
//! (errors, extractors, authentication) is in [`crate::http`].

pub mod api;
pub mod api_live;
pub mod broadcast;
pub mod director;
pub mod media;
pub mod v4;
pub mod web;
pub mod ws;
