//! DynamoDB for the source tests: moto's server (installed by
//! `scripts/install-emulators.sh`, the same one the S3 tests use), set up
//! with boto3 from moto's virtualenv. Any access key is accepted.

use std::process::Command;

use super::emulators::{Emulator, tools};
use super::output_text;

/// A moto server with DynamoDB tables.
pub struct Dynamo {
    pub moto: Emulator,
}

impl Dynamo {
    pub fn start() -> Dynamo {
        Dynamo { moto: Emulator::moto() }
    }

    /// The connection options reaching it.
    pub fn options(&self) -> String {
        format!(
            "endpoint '{}', region 'us-east-1', access_key_id 'test', secret_access_key 'test'",
            self.moto.endpoint()
        )
    }

    /// Runs Python with `d`, a boto3 DynamoDB client of this server.
    pub fn python(&self, code: &str) -> String {
        let program = format!(
            "import boto3, json\n\
             d = boto3.client('dynamodb', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.moto.endpoint()
        );
        let out = Command::new(tools().join("moto-venv/bin/python"))
            .args(["-c", &program])
            .output()
            .expect("run python");
        assert!(out.status.success(), "{program}:\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates `table` with the numeric partition key `id`.
    pub fn create_table(&self, table: &str) {
        self.python(&format!(
            "d.create_table(TableName='{table}', KeySchema=[{{'AttributeName': 'id', 'KeyType': 'HASH'}}], \
             AttributeDefinitions=[{{'AttributeName': 'id', 'AttributeType': 'N'}}], BillingMode='PAY_PER_REQUEST')"
        ));
    }

    /// Puts items written in DynamoDB's JSON (`{"id": {"N": "1"}, ...}`).
    pub fn put(&self, table: &str, items: &[serde_json::Value]) {
        let items = serde_json::Value::Array(items.to_vec()).to_string();
        self.python(&format!(
            "for item in json.loads({items:?}):\n    d.put_item(TableName='{table}', Item=item)"
        ));
    }
}
