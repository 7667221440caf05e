//! What Sluice's AWS clients share (DynamoDB, Secrets Manager): the
//! credential chain ([`credentials`]) and signed requests to the services'
//! JSON protocols ([`json`]).

pub(crate) mod credentials;
pub(crate) mod json;
