//! hanzo-python-runtime (work in progress).
