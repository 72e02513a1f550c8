pub fn x(){}
pub mod cluster;
