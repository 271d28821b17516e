"""The explorer app for a Hugging Face Space, which runs ``app.py``; locally, ``python -m eva9 app`` is the same.

A Space sets GRADIO_SERVER_NAME (0.0.0.0) and GRADIO_SERVER_PORT; elsewhere the app serves on 127.0.0.1:7860.
"""

import os

from eva9.app import launch

if __name__ == "__main__":
    launch(os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
