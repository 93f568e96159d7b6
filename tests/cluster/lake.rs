//! A data lake target in the cluster: the real controller, Job workers (the local API server's
//! Job executor), Azurite with the account key from a Secret, a `file://` lake written
//! in-process under the operator's directory, and every table read back through the deltalake
//! package (`tests/lake/read.py`), which cloudmigrate did not write.

use crate::api_server::TestNamespace;
use crate::controller::{Controller, database, ended, ok, psql, request_run, wait_for};
use cloudmigrate::lake::store::LakeTarget;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with tests/run.sh, which starts Azurite")
    })
}

/// A source with one company and two tables: `CRONUS$Item` (1,000 rows) and
/// `CRONUS$G_L Entry` (decimal amounts).
fn source(label: &str) -> String {
    let src = database(label);
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" varchar(30) PRIMARY KEY);\n\
         INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" integer PRIMARY KEY, \"Description\" varchar(100));\n\
         INSERT INTO \"CRONUS$Item\" SELECT i, 'item ' || i FROM generate_series(1, 1000) i;\n\
         CREATE TABLE \"CRONUS$G_L Entry\" (\"Entry No_\" integer PRIMARY KEY, \"Amount\" numeric(38,20));\n\
         INSERT INTO \"CRONUS$G_L Entry\" SELECT i, i * 1.25 FROM generate_series(1, 50) i;",
    );
    src
}

/// A schedule of `src` into the lake `url`, its key in Secret `secret`.
fn lake_schedule(
    name: &str,
    src: &str,
    url: &str,
    lake: &str,
    secret: &str,
    runner: &str,
) -> String {
    let (base, _) = crate::controller::pg();
    format!(
        "apiVersion: cloudmigrate.io/v1alpha1\n\
         kind: MigrationSchedule\n\
         metadata: {{name: {name}}}\n\
         spec:\n\
         \x20 source: {{url: \"{base}/{src}\", passwordSecretRef: {{name: pg}}, tls: {{caSecretRef: {{name: pg}}}}}}\n\
         \x20 target: {{url: \"{url}\"{lake}{secret}}}\n\
         \x20 runtime: {{runner: {runner}}}\n"
    )
}

/// A Secret whose `password` is `value`.
fn secret(ns: &TestNamespace, name: &str, value: &str) {
    let yaml = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"password": value},
    })
    .to_string();
    ok(ns.kubectl(&["apply", "-f", "-"], Some(&yaml)), "the Secret");
}

/// One JSONPath of an object.
fn get(ns: &TestNamespace, object: &str, jsonpath: &str) -> String {
    ok(
        ns.kubectl(
            &["get", object, "-o", &format!("jsonpath={jsonpath}")],
            None,
        ),
        jsonpath,
    )
}

/// The rows the deltalake package reads from the Delta table at `url`, sorted.
fn read_back(url: &str, options: &serde_json::Value) -> Vec<serde_json::Value> {
    let python = format!("{}/bin/python", env("CLOUDMIGRATE_VENV"));
    let script = crate::api_server::repo().join("tests/lake/read.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(url)
        .arg(options.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read.py {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows = v["deltalake"].as_array().expect("deltalake's rows").clone();
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

/// The names of everything under the lake's folder.
fn listed(target: &LakeTarget) -> Vec<String> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lake = cloudmigrate::lake::store::open(target).unwrap();
        lake.store
            .list(Some(&lake.root))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await
    })
}

/// A wrong key shows on the schedule as `LakeAccessDenied`, never the key itself, and a run
/// with it fails before writing anything. With the key fixed, a Job's worker writes each
/// table as a Delta table that deltalake reads as the source; the run's status has each
/// table's Delta version and location, and the schedule's tiles count them. An incremental run
/// adds one version. No runtime key is made, and a CloudReset refuses, saying what to do.
#[test]
fn a_job_run_writes_azurite_with_the_key_from_its_secret_and_a_wrong_key_is_a_condition() {
    let ns = TestNamespace::new("lake-job");
    let src = source("lake_job_src");
    let controller = Controller::start(&ns.name);
    let (account, key, endpoint) = (
        env("CLOUDMIGRATE_TEST_AZURITE_ACCOUNT"),
        env("CLOUDMIGRATE_TEST_AZURITE_KEY"),
        env("CLOUDMIGRATE_TEST_AZURITE_ENDPOINT"),
    );
    let url = format!("az://lake/{}", ns.name);
    let wrong = "d3Jvbmcga2V5";
    secret(&ns, "lake-wrong", wrong);
    secret(&ns, "lake", &key);
    let lake = format!(", lake: {{account: {account}, endpoint: \"{endpoint}\"}}");
    let yaml = |secret: &str| {
        lake_schedule(
            "erp",
            &src,
            &url,
            &lake,
            &format!(", passwordSecretRef: {{name: {secret}}}"),
            "Job",
        )
    };
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml("lake-wrong"))),
        "the schedule",
    );
    let ready = wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|{.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("LakeAccessDenied|"),
        &controller,
    );
    assert!(ready.contains("key"), "{ready}");
    assert!(!ready.contains(wrong), "{ready}");
    // A run with the wrong key fails, naming the fix, and writes nothing.
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: wrong-key}\n\
                 spec: {scheduleRef: {name: erp}}\n",
            ),
        ),
        "the run",
    );
    assert_eq!(ended(&ns, "wrong-key", &controller), "Failed");
    let why = get(
        &ns,
        "mrun/wrong-key",
        "{.status.conditions[?(@.type==\"Succeeded\")].message}",
    );
    assert!(why.contains("passwordSecretRef"), "{why}");
    assert!(!why.contains(wrong), "{why}");
    let target = LakeTarget {
        url: url.clone(),
        account: Some(account.clone()),
        endpoint: Some(endpoint.clone()),
        secret: Some(key.clone()),
        ..Default::default()
    };
    assert_eq!(listed(&target), Vec::<String>::new(), "nothing is written");

    // The key fixed: the schedule is Ready, its runs write the lake.
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml("lake"))),
        "the fixed schedule",
    );
    wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
    let runtime_key = get(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"RuntimeKey\")].reason}",
    );
    assert_eq!(runtime_key, "NoLoginRoles");
    request_run(&ns, "erp", "1");
    let first = wait_for(
        &ns,
        "msched/erp",
        "{.status.lastRun.name}",
        |s| !s.is_empty() && s != "wrong-key",
        &controller,
    );
    assert_eq!(ended(&ns, &first, &controller), "Succeeded");
    let item = "{.status.tables[?(@.table==\"Item\")]";
    let lake_item = get(
        &ns,
        &format!("mrun/{first}"),
        &format!("{item}.lake.version}}|{item}.lake.rows}}|{item}.lake.location}}"),
    );
    assert_eq!(lake_item, format!("0|1000|{url}/companies/CRONUS/Item"));
    let options = serde_json::json!({"account_name": account, "account_key": key,
        "endpoint": endpoint, "allow_http": "true"});
    let item_url = format!("{url}/companies/CRONUS/Item");
    assert_eq!(read_back(&item_url, &options).len(), 1000);
    let entries = read_back(&format!("{url}/companies/CRONUS/G_L Entry"), &options);
    assert_eq!(entries.len(), 50);
    assert!(
        entries.contains(&serde_json::json!(["2", "2.5"])),
        "{entries:?}"
    );

    // Changes in the source: the next run commits them in one new version.
    psql(
        &src,
        "UPDATE \"CRONUS$Item\" SET \"Description\" = 'changed' WHERE \"No_\" <= 5;\n\
         DELETE FROM \"CRONUS$Item\" WHERE \"No_\" = 1000;\n\
         INSERT INTO \"CRONUS$Item\" VALUES (1001, 'new');",
    );
    request_run(&ns, "erp", "2");
    let second = wait_for(
        &ns,
        "msched/erp",
        "{.status.lastRun.name}",
        |s| !s.is_empty() && s != "wrong-key" && s != first,
        &controller,
    );
    assert_eq!(ended(&ns, &second, &controller), "Succeeded");
    let changed = get(
        &ns,
        &format!("mrun/{second}"),
        &format!("{item}.mode}}|{item}.lake.version}}|{item}.lake.rows}}"),
    );
    assert_eq!(changed, "Incremental|1|1000");
    let rows = read_back(&item_url, &options);
    assert_eq!(rows.len(), 1000);
    assert!(rows.contains(&serde_json::json!(["3", "changed"])));
    assert!(rows.contains(&serde_json::json!(["1001", "new"])));
    assert!(!rows.iter().any(|r| r[0] == "1000"));
    let tiles = wait_for(
        &ns,
        "msched/erp",
        "{.status.migration.tablesMigrated}",
        |s| s == "3",
        &controller,
    );
    // The company's two tables and the Company table.
    assert_eq!(tiles, "3");
    // No runtime key: a lake is written with its own key.
    let key_secret = ns.kubectl(&["get", "secret", "erp-runtime-key"], None);
    assert!(
        !key_secret.ok && key_secret.stderr.contains("NotFound"),
        "{}",
        key_secret.stderr
    );
    // A CloudReset says what to do instead, and clears nothing.
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: CloudReset\nmetadata: {name: again}\n\
                 spec: {scheduleRef: {name: erp}, confirm: erp}\n",
            ),
        ),
        "the reset",
    );
    let reset = wait_for(
        &ns,
        "cloudreset/again",
        "{.status.conditions[?(@.type==\"Succeeded\")].reason}|{.status.conditions[?(@.type==\"Succeeded\")].message}",
        |s| !s.is_empty() && !s.starts_with('|') && !s.starts_with("Unknown"),
        &controller,
    );
    assert!(reset.starts_with("NotForLakeTarget|"), "{reset}");
    assert!(reset.contains("type: Full"), "{reset}");
    assert_eq!(read_back(&item_url, &options).len(), 1000);
}

/// In the controller, a `file://` lake opens only under the operator's directories: one
/// outside is refused as a SQLite file is, with the same words whether it exists or not; one
/// inside is written by an in-process run and read back.
#[test]
fn an_in_process_run_writes_a_file_lake_only_under_the_operators_directory() {
    let ns = TestNamespace::new("lake-file");
    let src = source("lake_file_src");
    let dir = std::env::temp_dir().join(format!("cloudmigrate-lakes-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let controller =
        Controller::start_with(&ns.name, &["--sqlite-dir", dir.to_str().unwrap()], "a");
    let outside = lake_schedule(
        "erp",
        &src,
        "file:///etc/cloudmigrate-lake",
        "",
        "",
        "InProcess",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&outside)),
        "the schedule outside",
    );
    let refused = wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|{.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("InvalidLakeTarget|"),
        &controller,
    );
    assert!(refused.contains("file:// lake refused"), "{refused}");
    assert!(refused.contains(dir.to_str().unwrap()), "{refused}");
    assert!(!std::path::Path::new("/etc/cloudmigrate-lake").exists());

    let url = format!("file://{}/lake", dir.display());
    let inside = lake_schedule("erp", &src, &url, "", "", "InProcess");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&inside)),
        "the schedule inside",
    );
    wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
    request_run(&ns, "erp", "1");
    let run = wait_for(
        &ns,
        "msched/erp",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    let rows = read_back(
        &format!("{url}/companies/CRONUS/Item"),
        &serde_json::json!({}),
    );
    assert_eq!(rows.len(), 1000);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `s3://` against SeaweedFS, in-process: a wrong secret access key makes the schedule
/// `Ready=False` (`LakeAccessDenied`) without showing it, and nothing is written; with the
/// right one, a run writes tables that deltalake reads through the S3 API.
#[test]
fn an_s3_lake_refuses_a_wrong_key_as_a_condition_and_takes_the_right_one() {
    let ns = TestNamespace::new("lake-s3");
    let src = source("lake_s3_src");
    let controller = Controller::start(&ns.name);
    let (id, key, endpoint) = (
        env("CLOUDMIGRATE_TEST_S3_KEY_ID"),
        env("CLOUDMIGRATE_TEST_S3_SECRET"),
        env("CLOUDMIGRATE_TEST_S3_ENDPOINT"),
    );
    let url = format!("s3://lake/{}", ns.name);
    let wrong = "not-the-secret-key";
    secret(&ns, "s3", wrong);
    let lake = format!(", lake: {{accessKeyId: {id}, endpoint: \"{endpoint}\"}}");
    let yaml = lake_schedule(
        "erp",
        &src,
        &url,
        &lake,
        ", passwordSecretRef: {name: s3}",
        "InProcess",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "the schedule",
    );
    let ready = wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|{.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("LakeAccessDenied|"),
        &controller,
    );
    assert!(!ready.contains(wrong), "{ready}");
    let target = LakeTarget {
        url: url.clone(),
        access_key_id: Some(id.clone()),
        endpoint: Some(endpoint.clone()),
        secret: Some(key.clone()),
        ..Default::default()
    };
    assert_eq!(listed(&target), Vec::<String>::new(), "nothing is written");
    // The right key, in a Secret of another name: the probe looks again at once.
    secret(&ns, "s3-right", &key);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&yaml.replace("{name: s3}", "{name: s3-right}")),
        ),
        "the fixed schedule",
    );
    wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
    request_run(&ns, "erp", "1");
    let run = wait_for(
        &ns,
        "msched/erp",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    let options = serde_json::json!({"access_key_id": id, "secret_access_key": key,
        "endpoint": endpoint, "allow_http": "true", "region": "us-east-1"});
    let rows = read_back(&format!("{url}/companies/CRONUS/Item"), &options);
    assert_eq!(rows.len(), 1000);
}
