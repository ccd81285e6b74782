mkdir real && echo in > real/f && ln -s f real/inner && ln -s real link-dir
