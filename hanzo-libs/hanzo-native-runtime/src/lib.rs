//! hanzo-native-runtime (work in progress).
