//! Every read model the API serves, folded together so one position describes them all.

use events::Recorded;
use serde::{Deserialize, Serialize};

use crate::Projection;
use crate::devices::Devices;
use crate::keys::Keys;
use crate::orgs::Orgs;
use crate::tokens::Tokens;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Models {
    pub orgs: Orgs,
    pub tokens: Tokens,
    pub keys: Keys,
    pub devices: Devices,
}

impl Projection for Models {
    const NAME: &'static str = "models";
    // One byte per part: changes whenever any part's version does.
    const VERSION: u32 =
        (Orgs::VERSION << 24) | (Tokens::VERSION << 16) | (Keys::VERSION << 8) | Devices::VERSION;

    fn apply(&mut self, r: &Recorded) {
        self.orgs.apply(r);
        self.tokens.apply(r);
        self.keys.apply(r);
        self.devices.apply(r);
    }
}
