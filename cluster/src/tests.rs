//! Plan round trips through Sluice's codecs, and a run through Ballista's
//! standalone scheduler and executor in this process.

use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use sluice_catalog::MasterKey;
use sluice_engine::contract::{ResolvedOptions, Segment, SharedStore};
use sluice_engine::jobs::cluster::{ExtractTask, Role, TaskConnection};

use super::*;

fn key(byte: u8) -> MasterKey {
    MasterKey::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
}

/// A task of part `part` whose options are sealed with `key`.
fn task(part: u32, key: &MasterKey) -> ExtractTask {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    ExtractTask {
        job: "orders".into(),
        run_id: 7,
        part,
        source: TaskConnection::seal(
            "shop",
            "postgres",
            &ResolvedOptions::default(),
            key,
            ("orders", 7, Role::Source),
        ),
        schema: "public".into(),
        table: "orders".into(),
        columns: vec!["id".into(), "note".into()],
        filter: Some(format!("id >= {} AND id < {}", part * 10, part * 10 + 10)),
        segment: Some(Segment { index: part, total: 4 }),
        batch_rows: None,
        snapshot: Some("00000003-0000001B-1".into()),
        loaded: schema.clone(),
        cursor: Some(0),
        files: None,
        arrangement: vec![Some(0), Some(1), None],
        store: SharedStore::Warehouse {
            location: "s3://lake/wh".into(),
            table: "orders".into(),
        },
        destination: None,
        prefix: "run-7-00ff".into(),
        target_schema: Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
            Field::new("dropped", DataType::Utf8, true),
        ])),
    }
}

#[test]
fn the_logical_node_round_trips_through_the_codec() {
    let tasks = vec![task(0, &key(1)), task(1, &key(1))];
    let node = Extension {
        node: Arc::new(ExtractNode::new(tasks.clone())),
    };
    let codec = SluiceLogicalCodec::default();
    let mut bytes = Vec::new();
    codec.try_encode(&node, &mut bytes).unwrap();
    let decoded = codec.try_decode(&bytes, &[], &TaskContext::default()).unwrap();
    let decoded = decoded.node.as_any().downcast_ref::<ExtractNode>().unwrap();
    assert_eq!(decoded.tasks, tasks);
    // Bytes that are not Sluice's go to Ballista's codec, which refuses
    // these.
    assert!(
        codec
            .try_decode(b"\x08\x01garbage", &[], &TaskContext::default())
            .is_err()
    );
}

#[test]
fn the_physical_plan_round_trips_and_only_an_executor_runs_it() {
    let tasks = vec![task(0, &key(1)), task(1, &key(1)), task(2, &key(1))];
    let plan: Arc<dyn ExecutionPlan> = Arc::new(ExtractExec::of_tasks(&tasks).unwrap());
    let scheduler = SluicePhysicalCodec::default();
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &scheduler).unwrap();
    let decoded = physical_plan_from_bytes_with_extension_codec(&bytes, &TaskContext::default(), &scheduler).unwrap();
    let decoded = decoded.downcast_ref::<ExtractExec>().unwrap();
    assert_eq!(
        decoded.properties().partitioning.partition_count(),
        3,
        "one partition per task"
    );
    let rows = decoded.execute(0, Arc::new(TaskContext::default())).unwrap();
    let error = futures::executor::block_on(datafusion::physical_plan::common::collect(rows)).unwrap_err();
    assert!(error.to_string().contains("holds no cluster key"), "{error}");
}

/// The tasks an executor's plan holds, partition by partition, read from
/// its memory source.
async fn tasks_of(plan: &Arc<dyn ExecutionPlan>) -> Vec<Vec<ExtractTask>> {
    let input = plan.children()[0].clone();
    let mut parts = Vec::new();
    for partition in 0..input.properties().partitioning.partition_count() {
        let batches = datafusion::physical_plan::common::collect(input.execute(partition, Arc::default()).unwrap())
            .await
            .unwrap();
        let column = batches[0].column(0).as_string::<i32>();
        parts.push(
            (0..column.len())
                .map(|row| ExtractTask::from_bytes(column.value(row).as_bytes()).unwrap())
                .collect(),
        );
    }
    parts
}

#[tokio::test]
async fn an_executor_decodes_exactly_the_tasks_of_its_slice() {
    let tasks: Vec<_> = (0..4).map(|part| task(part, &key(1))).collect();
    let plan: Arc<dyn ExecutionPlan> = Arc::new(ExtractExec::of_tasks(&tasks).unwrap());
    // Ballista cuts a stage's plan to a task's partitions before sending it.
    let slice = ballista_scheduler::state::task_builder::restrict_plan_to_partitions(plan, &[1, 3]).unwrap();
    let executor = SluicePhysicalCodec::executor(Runner {
        key: key(1),
        executor: "test".into(),
    });
    let bytes = physical_plan_to_bytes_with_extension_codec(slice, &executor).unwrap();
    let decoded = physical_plan_from_bytes_with_extension_codec(&bytes, &TaskContext::default(), &executor).unwrap();
    assert!(decoded.is::<ExtractExec>());
    assert_eq!(
        tasks_of(&decoded).await,
        [vec![tasks[1].clone()], vec![tasks[3].clone()]]
    );
}

/// A server session, in-process scheduler and executor whose key is
/// `executor_key`.
async fn standalone(executor_key: MasterKey) -> SessionContext {
    let runner = Runner {
        key: executor_key,
        executor: "in-process".into(),
    };
    let config = SessionConfig::new_with_ballista()
        .with_ballista_logical_extension_codec(Arc::new(SluiceLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(SluicePhysicalCodec::executor(runner)));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_query_planner(Arc::new(SluiceQueryPlanner))
        .build();
    SessionContext::standalone_with_state(state).await.unwrap()
}

async fn run(context: &SessionContext, tasks: Vec<ExtractTask>) -> Result<(), String> {
    let plan = LogicalPlan::Extension(Extension {
        node: Arc::new(ExtractNode::new(tasks)),
    });
    let frame = context.execute_logical_plan(plan).await.map_err(|e| e.to_string())?;
    frame.collect().await.map(drop).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_reach_the_executor_and_open_only_with_its_key() {
    // Sealed with another key: the executor decodes the plan and runs the
    // task, which cannot open the options.
    let context = standalone(key(2)).await;
    let error = run(&context, vec![task(0, &key(1))]).await.unwrap_err();
    assert!(
        error.contains("does not open the options of connection shop"),
        "{error}"
    );

    // With the right key the options open, and the task goes on to its
    // source: this connection type names none here.
    let context = standalone(key(1)).await;
    let mut unknown = task(0, &key(1));
    unknown.source.kind = "nosuchdb".into();
    let error = run(&context, vec![unknown]).await.unwrap_err();
    assert!(error.contains("nosuchdb"), "{error}");
}
