//! A test plugin that claims ABI 2.0, so the host's refusal can be tested against a real library.
//! Its vtable is otherwise a valid v1 one, which is exactly the dangerous case: only the version
//! tells the host not to call it.

use cohort_plugin_api::abi::PluginVtable;
use cohort_plugin_api::prelude::*;

/// The plugin (never opened by a correct host).
#[derive(Debug)]
pub struct WrongAbi;

impl Plugin for WrongAbi {
    type Config = serde_json::Value;

    fn manifest() -> Manifest {
        Manifest::source("test-wrong-abi", env!("CARGO_PKG_VERSION")).streams([Stream::Customers])
    }

    fn open(_config: serde_json::Value, _host: Host) -> Result<Self, PluginError> {
        Ok(WrongAbi)
    }
}

impl Source for WrongAbi {
    type Cursor = ();

    fn next_page(
        &mut self,
        _stream: Stream,
        _cursor: Option<()>,
        _page: &mut PageWriter,
    ) -> Result<PageEnd<()>, PluginError> {
        Ok(PageEnd {
            next_cursor: (),
            done: true,
        })
    }
}

static VTABLE: PluginVtable = {
    let mut v = cohort_plugin_api::sdk::ffi::vtable::<WrongAbi>(
        cohort_plugin_api::sdk::ffi::next_page_fn::<WrongAbi>(),
        None,
        None,
        None,
    );
    v.abi_major = 2;
    v.abi_minor = 3;
    v
};

/// Entry point claiming ABI 2.3.
#[unsafe(no_mangle)]
pub extern "C" fn cohort_plugin_entry(_host_major: u32, _host_minor: u32) -> *const PluginVtable {
    &VTABLE
}
