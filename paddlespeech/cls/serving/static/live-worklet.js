// The page's "Live" mode: hands the microphone's samples (mono, at the
// AudioContext's rate) to the page in blocks of about 0.1 s.
class PcmTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(Math.round(sampleRate / 10));
    this.filled = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const ch = input[0];
      let at = 0;
      while (at < ch.length) {
        const n = Math.min(ch.length - at, this.block.length - this.filled);
        this.block.set(ch.subarray(at, at + n), this.filled);
        this.filled += n;
        at += n;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block.slice(0));
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("pcm-tap", PcmTap);
