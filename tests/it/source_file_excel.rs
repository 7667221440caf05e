//! Excel workbooks as tables, one per sheet, through a real client:
//! SHOW TABLES, DESCRIBE, SELECT and a job; Excel files in a folder are
//! refused with `0A000`.

use std::process::Command;

use crate::common;

use common::*;

/// Writes a workbook (argv[1]) with the sheets `Orders` and `Notes`, by
/// hand with Python's zipfile (no spreadsheet library needed).
const WRITE_WORKBOOK: &str = r#"
import sys, zipfile
path = sys.argv[1]
sheets = [("Orders", [["id", "item", "price", "paid"], [1, "pen", 1.5, True], [2, "ink", None, False]]),
          ("Notes", [["note"], ["hello"]])]
NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
def cell(ref, v):
    if isinstance(v, bool):
        return f'<c r="{ref}" t="b"><v>{int(v)}</v></c>'
    if isinstance(v, (int, float)):
        return f'<c r="{ref}"><v>{v}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{v}</t></is></c>'
def sheet(rows):
    body = ''.join('<row r="%d">%s</row>' % (i + 1, ''.join(cell('%s%d' % ('ABCDEFGH'[j], i + 1), v) for j, v in enumerate(r) if v is not None)) for i, r in enumerate(rows))
    return f'<?xml version="1.0" encoding="UTF-8"?><worksheet {NS}><sheetData>{body}</sheetData></worksheet>'
with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
    overrides = ''.join(f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>' for i in range(len(sheets)))
    z.writestr('[Content_Types].xml', '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>' + overrides + '</Types>')
    z.writestr('_rels/.rels', '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
    z.writestr('xl/workbook.xml', f'<?xml version="1.0" encoding="UTF-8"?><workbook {NS} {R}><sheets>' + ''.join(f'<sheet name="{n}" sheetId="{i + 1}" r:id="rId{i + 1}"/>' for i, (n, _) in enumerate(sheets)) + '</sheets></workbook>')
    z.writestr('xl/_rels/workbook.xml.rels', '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">' + ''.join(f'<Relationship Id="rId{i + 1}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{i + 1}.xml"/>' for i in range(len(sheets))) + '</Relationships>')
    for i, (_, rows) in enumerate(sheets):
        z.writestr(f'xl/worksheets/sheet{i + 1}.xml', sheet(rows))
"#;

fn write_workbook(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("python3")
        .args(["-c", WRITE_WORKBOOK])
        .arg(path)
        .status()
        .expect("run python3");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sheet_of_a_workbook_is_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_workbook(&d.join("book.xlsx"));
    write_workbook(&d.join("reports").join("2026.xlsx"));
    let sluice = Sluice::start();
    let client = sluice.client().await;
    client
        .batch_execute(&format!(
            "CREATE CONNECTION lake TYPE local OPTIONS (path '{}')",
            d.display()
        ))
        .await
        .unwrap();
    let tables = rows(&client, "SHOW TABLES FROM lake.files").await;
    let names: Vec<_> = tables.iter().map(|t| t[1].clone().unwrap()).collect();
    assert_eq!(names, ["book_Notes", "book_Orders", "reports"]);

    let described = rows(&client, "DESCRIBE lake.files.\"book_Orders\"").await;
    let columns: Vec<(String, String, String)> = described
        .iter()
        .map(|c| (c[0].clone().unwrap(), c[7].clone().unwrap(), c[9].clone().unwrap()))
        .collect();
    let expected = [
        ("id", "INT64"),
        ("item", "STRING"),
        ("price", "FLOAT64"),
        ("paid", "BOOL"),
    ]
    .map(|(name, bigquery)| (name.to_owned(), bigquery.to_owned(), "medium".to_owned()));
    assert_eq!(columns, expected, "{described:?}");
    assert_eq!(
        rows(
            &client,
            "SELECT id, item, price, paid FROM lake.files.\"book_Orders\" ORDER BY id"
        )
        .await,
        [
            [
                Some("1".to_owned()),
                Some("pen".into()),
                Some("1.5".into()),
                Some("t".into())
            ],
            [Some("2".into()), Some("ink".into()), None, Some("f".into())],
        ]
    );
    assert_eq!(
        one(&client, "SELECT note FROM lake.files.\"book_Notes\"").await,
        "hello"
    );

    client
        .batch_execute("CREATE ETL JOB orders FROM lake.files.\"book_Orders\" INTO warehouse.orders SNAPSHOT")
        .await
        .unwrap();
    let summary = rows(&client, "RUN ETL JOB orders").await;
    assert_eq!(summary[0][1].as_deref(), Some("succeeded"), "{summary:?}");
    assert_eq!(
        one(
            &client,
            "SELECT string_agg(item, ',' ORDER BY id) FROM warehouse.orders"
        )
        .await,
        "pen,ink"
    );

    let message = expect_err(&client, "DESCRIBE lake.files.reports", "0A000").await;
    assert!(
        message.contains("Excel") && message.contains("one table per sheet"),
        "{message}"
    );
}
