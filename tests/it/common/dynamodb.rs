//! DynamoDB for the source tests: moto's server (installed by
//! `scripts/install-emulators.sh`, the same one the S3 tests use), set up
//! with boto3 from moto's virtualenv. Any access key is accepted.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::emulators::{Emulator, tools};
use super::{accepts_tcp, free_port, output_text};

/// A moto server with DynamoDB tables.
pub struct Dynamo {
    endpoint: String,
    _server: Server,
}

enum Server {
    Shared(Emulator),
    /// moto checking signatures against its IAM.
    Checked(Child),
}

impl Drop for Dynamo {
    fn drop(&mut self) {
        if let Server::Checked(child) = &mut self._server {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Dynamo {
    pub fn start() -> Dynamo {
        let moto = Emulator::moto();
        Dynamo {
            endpoint: moto.endpoint(),
            _server: Server::Shared(moto),
        }
    }

    /// moto that checks signatures after its first three (unsigned)
    /// actions: creates table `orders` and a user allowed everything on
    /// DynamoDB; returns its access key (id, secret).
    pub fn start_checking_keys() -> (Dynamo, (String, String)) {
        let port = free_port();
        let child = Command::new(tools().join("moto-venv/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !accepts_tcp(port) {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let dynamo = Dynamo {
            endpoint: format!("http://127.0.0.1:{port}"),
            _server: Server::Checked(child),
        };
        let out = dynamo.python(
            "d.create_table(TableName='orders', KeySchema=[{'AttributeName': 'id', 'KeyType': 'HASH'}], \
             AttributeDefinitions=[{'AttributeName': 'id', 'AttributeType': 'N'}], BillingMode='PAY_PER_REQUEST')\n\
             iam = boto3.client('iam', endpoint_url=d.meta.endpoint_url, region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n\
             iam.create_user(UserName='etl')\n\
             iam.put_user_policy(UserName='etl', PolicyName='all', PolicyDocument=json.dumps({'Version': '2012-10-17', \
             'Statement': [{'Effect': 'Allow', 'Action': 'dynamodb:*', 'Resource': '*'}]}))\n\
             key = iam.create_access_key(UserName='etl')['AccessKey']\n\
             print(key['AccessKeyId'], key['SecretAccessKey'])",
        );
        let keys: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        assert_eq!(keys.len(), 2, "{out}");
        (dynamo, (keys[0].clone(), keys[1].clone()))
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The connection options reaching it.
    pub fn options(&self) -> String {
        format!(
            "endpoint '{}', region 'us-east-1', access_key_id 'test', secret_access_key 'test'",
            self.endpoint
        )
    }

    /// Runs Python with `d`, a boto3 DynamoDB client of this server.
    pub fn python(&self, code: &str) -> String {
        let program = format!(
            "import boto3, json\n\
             d = boto3.client('dynamodb', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.endpoint
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
