//! Messages generated from the project's `.proto` files (see build.rs).
#![allow(clippy::all, missing_docs)]

pub mod tensorflow {
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));
    pub mod serving {
        include!(concat!(env!("OUT_DIR"), "/tensorflow.serving.rs"));
    }
}

pub mod inference {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}
