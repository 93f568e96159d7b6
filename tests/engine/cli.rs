//! The two commands a newcomer runs: `cloudmigrate demo` and `cloudmigrate run -f`.

use std::process::Command;

fn cloudmigrate(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("CLOUDMIGRATE_SOURCE_PASSWORD")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_then_run_from_a_manifest() {
    let dir = std::env::temp_dir().join(format!("cm-demo-{}", std::process::id()));
    let dir_s = dir.to_string_lossy().to_string();
    let (code, out, err) = cloudmigrate(&["demo", "--dir", &dir_s], &[]);
    // One table fails by design (a value too long for the cloud); the demo still succeeds.
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("3 companies"), "{err}");
    for expected in [
        "Tables migrated",
        "Tables with warnings              1",
        "Tables failed                     1",
        "value too long for column \"Name\"",
        "not migrated by design: permissions and users work differently online",
        "was missing in the cloud and was created",
        "G_L Entry",
    ] {
        assert!(
            out.contains(expected),
            "demo output lacks {expected:?}:\n{out}"
        );
    }

    // The same databases again, from a manifest, for two companies only.
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/local/schedule.yaml"
    ))
    .unwrap()
    .replace("sqlite://cloudmigrate-demo/", &format!("sqlite://{dir_s}/"));
    let file = dir.join("schedule.yaml");
    std::fs::write(&file, manifest).unwrap();
    let (code, out, err) = cloudmigrate(
        &["run", "-f", &file.to_string_lossy(), "--only-problems"],
        &[],
    );
    assert_eq!(
        code, 0,
        "no failing table is selected now:\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("Tables failed                     0"), "{out}");
    assert!(
        !out.contains("Contoso"),
        "an unselected company's tables are only counted:\n{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_explains_a_missing_password() {
    let dir = std::env::temp_dir().join(format!("cm-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("schedule.yaml");
    std::fs::write(
        &file,
        "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\nmetadata: {name: s}\nspec:\n  \
         source: {url: 'postgres://erp@127.0.0.1:1/bc', passwordSecretRef: {name: onprem-db}}\n  \
         target: {url: 'sqlite:///tmp/x.db'}\n",
    )
    .unwrap();
    let (code, _, err) = cloudmigrate(&["run", "-f", &file.to_string_lossy()], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("CLOUDMIGRATE_SOURCE_PASSWORD or --source-password-file"),
        "{err}"
    );
    let (code, _, err) = cloudmigrate(&["run", "-f", "/nonexistent.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("reading /nonexistent.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
