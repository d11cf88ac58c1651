"""Images in (files, TFOD's exact resize, batches, decode processes, nvJPEG on the GPU) and
pictures out."""
