//! The census data set: its schema, its CSV files, and the feature vocabularies learned from them.

pub mod csv;
pub mod features;
pub mod fixture;
pub mod model;
pub mod schema;

pub use csv::CensusRow;
pub use features::FeatureSpec;
