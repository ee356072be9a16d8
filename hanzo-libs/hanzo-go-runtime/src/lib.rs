//! hanzo-go-runtime (work in progress).
