import { expect, type Locator, type Page } from '@playwright/test';

/** Moves focus with Tab (or Shift+Tab) only, until `target` has it; fails after `limit` presses. */
export async function tabTo(page: Page, target: Locator, { back = false, limit = 80 } = {}) {
  const handle = await target.elementHandle();
  for (let i = 0; i < limit; i++) {
    if (await page.evaluate((el) => el === document.activeElement, handle)) return;
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
  }
  throw new Error(`Tab never reached ${target}`);
}

/** The focused element shows a visible focus ring (an outline that is not `none`). */
export async function expectVisibleFocus(page: Page) {
  const outline = await page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    if (!el || el === document.body) return 'nothing focused';
    const style = getComputedStyle(el);
    return el.matches(':focus-visible') ? `${style.outlineStyle} ${style.outlineWidth}` : 'not :focus-visible';
  });
  expect(outline).toMatch(/^(solid|auto|dashed|dotted|double) [1-9]/);
}

/** Tabs to `target` and types `text` into it (replacing what is there), by keyboard only. */
export async function typeInto(page: Page, target: Locator, text: string) {
  await tabTo(page, target);
  await expectVisibleFocus(page);
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Delete');
  if (text) await page.keyboard.type(text);
}
