//! dynalite (npm, installed by `scripts/install-emulators.sh`): DynamoDB on
//! an in-memory LevelDB that validates requests more like the real service
//! than moto; the second DynamoDB of the source tests. Tables are set up
//! with boto3 from moto's virtualenv.

use std::process::Command;

use super::emulators::{Emulator, tools};
use super::output_text;

pub struct Dynalite {
    emulator: Emulator,
}

impl Dynalite {
    pub fn start() -> Dynalite {
        let bin = tools().join("dynalite/node_modules/.bin/dynalite");
        let emulator = Emulator::spawn("dynalite", |port, _| {
            let mut cmd = Command::new(&bin);
            cmd.args([
                "--port",
                &port.to_string(),
                "--createTableMs",
                "0",
                "--deleteTableMs",
                "0",
            ]);
            cmd
        });
        Dynalite { emulator }
    }

    /// The connection options reaching it.
    pub fn options(&self) -> String {
        format!(
            "endpoint '{}', region 'us-east-1', access_key_id 'test', secret_access_key 'test'",
            self.emulator.endpoint()
        )
    }

    /// Runs Python with `d`, a boto3 DynamoDB client of this server.
    pub fn python(&self, code: &str) -> String {
        let program = format!(
            "import boto3, json\n\
             d = boto3.client('dynamodb', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.emulator.endpoint()
        );
        let out = Command::new(tools().join("moto-venv/bin/python"))
            .args(["-c", &program])
            .output()
            .expect("run python");
        assert!(out.status.success(), "{program}:\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
