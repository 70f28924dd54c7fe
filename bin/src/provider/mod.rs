//! Providers: outside stores a node takes its routing state from. The one provider so far is
//! etcd v3 ([`etcd`]), configured by `[provider.etcd]`.

pub mod etcd;
