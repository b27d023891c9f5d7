//! The ResNet-18, VGG-16 and MobileNetV2 presets through the whole pipeline on the bundled
//! data: train → decompose (GradSplitter and GA) → compose → patch, at small widths and tiny
//! schedules so the test stays within seconds per family.

mod common;
use common::{ok_json, p};

#[test]
fn resnet18_vgg16_mobilenetv2_train_decompose_compose_and_patch() {
    let tmp = tempfile::tempdir().unwrap();
    let families = [
        ("resnet18", "0.0625", 11_173_962u64, 20usize),
        ("vgg16", "0.0625", 14_728_266, 13),
        ("mobilenetv2", "0.125", 2_236_682, 52),
    ];
    let mut trained = Vec::new();
    for (arch, width, full_params, convs) in families {
        // inspect at width 1 reports torchvision's parameter count for 10 classes
        let full = ok_json(&["inspect", "--arch", arch, "--width", "1", "--json"]);
        assert_eq!(full["params"], full_params, "{arch}");
        let model = tmp.path().join(arch);
        let rec = ok_json(&[
            "train",
            "--arch",
            arch,
            "--width",
            width,
            "--epochs",
            "1",
            "--limit",
            "64",
            "--batch-size",
            "32",
            "--out",
            p(&model),
            "-q",
            "--json",
        ]);
        assert_eq!(rec["test_images"], 1000, "{arch}");
        let info = ok_json(&["inspect", "--model", p(&model), "--json"]);
        let kernels = info["kernels"].as_u64().unwrap();

        let grad = tmp.path().join(format!("{arch}-grad"));
        let rec = ok_json(&[
            "decompose",
            "--model",
            p(&model),
            "--out",
            p(&grad),
            "--warmup-epochs",
            "1",
            "--epochs",
            "1",
            "--limit",
            "64",
            "--batch-size",
            "32",
            "-q",
            "--json",
        ]);
        let modules = rec["modules"].as_array().unwrap();
        assert_eq!(modules.len(), 10, "{arch}");
        let m0 = ok_json(&["inspect", "--module", p(&grad.join("module_0")), "--json"]);
        assert_eq!(m0["method"], "grad", "{arch}");
        let m0_kernels = m0["kernels"].as_u64().unwrap();
        assert!(m0_kernels <= kernels, "{arch}: {m0_kernels} > {kernels}");
        assert_eq!(
            m0["retained"].as_array().map(Vec::len).unwrap_or(convs),
            convs,
            "{arch}: one retained list per conv"
        );
        let comp = ok_json(&[
            "compose",
            "--modules",
            p(&grad),
            "--model",
            p(&model),
            "-q",
            "--json",
        ]);
        assert_eq!(comp["modules"], 10, "{arch}");
        assert_eq!(comp["composed"]["samples"], 1000, "{arch}");

        let ga = tmp.path().join(format!("{arch}-ga"));
        let rec = ok_json(&[
            "decompose",
            "--method",
            "ga",
            "--model",
            p(&model),
            "--out",
            p(&ga),
            "--generations",
            "1",
            "--population",
            "4",
            "--parents",
            "2",
            "--keep",
            "1",
            "--fitness-images",
            "20",
            "--holdout-images",
            "20",
            "--eval-batch",
            "64",
            "-q",
            "--json",
        ]);
        assert_eq!(rec["method"], "ga", "{arch}");
        let ga_modules = rec["modules"].as_array().unwrap();
        assert_eq!(ga_modules.len(), 10, "{arch}");
        // a module whose score is constant has no calibration range and cannot patch
        let patching = ga_modules.iter().position(|m| {
            m["collapsed"]
                .as_array()
                .is_none_or(|r| r.iter().all(|r| r["reason"] != "constant-score"))
        });
        let comp = ok_json(&[
            "compose",
            "--modules",
            p(&ga),
            "--model",
            p(&model),
            "-q",
            "--json",
        ]);
        assert_eq!(comp["composed"]["samples"], 1000, "{arch}");
        trained.push((model, patching.map(|c| ga.join(format!("module_{c}")))));
    }
    // patch each family's model with the next family's first GA module that can patch (a
    // module patches any model of the same input format); a tiny run may leave it collapsed,
    // hence --force; a tiny GA run may leave the module without a calibration range, hence
    // --calibration none
    let mut patched_any = false;
    for i in 0..trained.len() {
        let (weak, _) = &trained[i];
        let Some(module) = &trained[(i + 1) % trained.len()].1 else {
            continue;
        };
        let patched = tmp.path().join(format!("patched-{i}"));
        let rep = ok_json(&[
            "patch",
            "--model",
            p(weak),
            "--module",
            p(module),
            "--out",
            p(&patched),
            "--force",
            "--calibration",
            "none",
            "-q",
            "--json",
        ]);
        assert_eq!(rep["report"]["images"], 1000);
        let ev = ok_json(&["eval", "--model", p(&patched), "-q", "--json"]);
        assert_eq!(ev["patched"], true);
        patched_any = true;
    }
    assert!(patched_any, "no family produced a GA module that can patch");
}
