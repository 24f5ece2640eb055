"""Print the C program's predicted digit for each demo input beside its label."""
import json
import sys
from pathlib import Path

import numpy as np

out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "out/mnist")
report = json.loads((out_dir / "report.json").read_text())
labels = np.load(Path(__file__).with_name("digits_labels.npy"))
predictions = report["predictions"]
right = sum(int(p == l) for p, l in zip(predictions, labels))
print("predicted:", " ".join(str(p) for p in predictions))
print("label:    ", " ".join(str(int(l)) for l in labels))
print(f"{right}/{len(labels)} correct on the C program (int8 test accuracy of this model on 1,000 "
      f"held-out digits: {json.loads(Path(__file__).with_name('metrics.json').read_text())['int8_tflite_test_accuracy']:.1%})")
