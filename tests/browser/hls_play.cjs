// Plays an HLS stream in Chromium with hls.js, every rung in turn, across the given times
// (chunk borders), and prints what happened as one JSON line.
//
//   node hls_play.cjs ORIGIN MASTER_URL HLS_JS CHROMIUM SECONDS...
//
// ORIGIN is the node's base URL: the page is opened there, so requests are same-origin.
// playwright-core and hls.js come from npm (scripts/setup.sh puts them in .tools/).
const { chromium } = require('playwright-core');

async function main() {
  const [origin, master, hlsPath, executablePath, ...times] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`${origin}/health`);
    await page.setContent('<video id="v" muted playsinline></video>');
    await page.addScriptTag({ path: hlsPath });
    const result = await page.evaluate(playEveryRung, { master, borders: times.map(Number) });
    console.log(JSON.stringify({ ...result, pageErrors }));
  } finally {
    await browser.close();
  }
}

// Runs in the page.
async function playEveryRung({ master, borders }) {
  const video = document.getElementById('v');
  if (!Hls.isSupported()) return { error: 'hls.js: this browser has no Media Source Extensions' };
  const hls = new Hls({ enableWorker: false });
  const fatal = [];
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (data.fatal) fatal.push(`${data.type}: ${data.details}`);
  });
  hls.loadSource(master);
  hls.attachMedia(video);
  await new Promise((resolve, reject) => {
    hls.on(Hls.Events.MANIFEST_PARSED, resolve);
    setTimeout(() => reject(new Error('the master playlist did not load in 15 s')), 15000);
  });
  const until = (check, ms) =>
    new Promise((resolve) => {
      const deadline = Date.now() + ms;
      const tick = () => {
        if (check()) resolve(true);
        else if (Date.now() > deadline || fatal.length) resolve(false);
        else setTimeout(tick, 50);
      };
      tick();
    });
  const report = [];
  for (let level = 0; level < hls.levels.length; level++) {
    hls.currentLevel = level;
    // Play from the start until the rung's own frames are on screen, then to each border.
    video.currentTime = 0;
    await video.play().catch(() => {});
    const height = hls.levels[level].height;
    const switched = await until(() => video.videoHeight === height && video.currentTime > 0.2, 20000);
    if (!switched) {
      report.push({ level, height, border: 0, reached: false, videoHeight: video.videoHeight });
      continue;
    }
    for (const border of borders) {
      video.currentTime = Math.max(0, border - 1);
      await video.play().catch(() => {});
      const reached = await until(() => video.currentTime >= border + 0.5, 20000);
      report.push({
        level,
        height: hls.levels[level].height,
        border,
        reached,
        currentTime: video.currentTime,
        videoHeight: video.videoHeight,
      });
      video.pause();
    }
  }
  const quality = video.getVideoPlaybackQuality();
  return {
    report,
    fatal,
    decodedFrames: quality.totalVideoFrames,
    mediaError: video.error ? video.error.message || String(video.error.code) : null,
  };
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e) }));
  process.exit(1);
});
